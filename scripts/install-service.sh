#!/usr/bin/env bash
# Installs berthd as a service of this machine, from this checkout (README "Run berthd as a service").
#
#   sudo scripts/install-service.sh --system     systemd system unit: root, socket 0660 for group berth
#   scripts/install-service.sh --user            systemd user unit (Linux) or LaunchAgent (macOS)
#   ... --uninstall                              stop, disable and remove what install wrote (never data)
#
# Run with --help for every option. Files are written from the templates in systemd/ and launchd/
# with the node found at install (>= 20) and this checkout's path; where systemd is not running
# (a container, a chroot) or with --root, the files are written and nothing is started.
set -euo pipefail

ME=$(basename "$0")
BERTH_ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LABEL=dev.berth.berthd
GROUP=berth
RESTART_KEYS_SINCE=254 # RestartSteps=, RestartMaxDelaySec=

usage() {
  cat <<EOF
usage: $ME --system | --user [options]
       $ME --print-docker-host

  --system              systemd system unit /etc/systemd/system/berthd.service (as root): berthd runs
                        as root with its capabilities cut down, state in /var/lib/berth, socket
                        /run/berth/berth.sock (0660, group $GROUP; the group is created, and the user
                        who ran sudo is added to it)
  --user                your own berthd on ~/.berth/berth.sock: a systemd user unit on Linux
                        (~/.config/systemd/user/berthd.service), a LaunchAgent on macOS
                        (~/Library/LaunchAgents/$LABEL.plist)
  --uninstall           stop, disable and remove the unit or plist (and the drop-in); keeps
                        BERTH_HOME, /etc/berth, the projects, the group and the logs
  --node PATH           the node to run (default: \`command -v node\`; must be 20 or newer)
  --projects-root DIR   PROJECTS_ROOT (default: /srv/berth/projects for --system, ~/projects for
                        --user); the system unit may write only there (and in /var/lib/berth)
  --protect-home MODE   system unit: read-only (default: projects, owners' ~/.gitconfig and root's
                        Claude login stay readable) or yes (homes hidden: projects root, checkout
                        and node must be outside /home and /root; use BERTH_MODEL_CREDENTIAL=secret:NAME)
  --docker-host URL     macOS: the engine address to use instead of the one found
  --no-start            write (and check) the files, but do not enable or start anything
  --root DIR            write everything under DIR (a staging root) and run nothing: no systemctl,
                        launchctl, groupadd or usermod (implies --no-start)
  --dry-run             print what would be done and the files it would write; change nothing
  --launchd             the macOS LaunchAgent even where uname is not Darwin (with --root or
                        --dry-run: to check the plist elsewhere)
  --systemd-version N   take systemd as version N (which drop-ins apply) instead of asking systemctl
  --print-docker-host   print the engine address a LaunchAgent would get, and exit
  -h, --help            this text
EOF
}

die() { echo "$ME: error: $*" >&2; exit 1; }
note() { echo "$ME: $*"; }
warn() { echo "$ME: warning: $*" >&2; }

MODE= UNINSTALL=0 NODE= PROJECTS_ROOT= PROTECT_HOME=read-only DOCKER_HOST_ARG= NO_START=0 ROOT= DRY=0
LAUNCHD=0 SYSTEMD_VERSION= PRINT_DOCKER_HOST=0
[ "$(uname -s)" = Darwin ] && LAUNCHD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --system) MODE=system ;;
    --user) MODE=user ;;
    --uninstall) UNINSTALL=1 ;;
    --node) NODE=${2:?--node needs a path}; shift ;;
    --projects-root) PROJECTS_ROOT=${2:?--projects-root needs a directory}; shift ;;
    --protect-home) PROTECT_HOME=${2:?--protect-home needs yes or read-only}; shift ;;
    --docker-host) DOCKER_HOST_ARG=${2:?--docker-host needs a URL}; shift ;;
    --no-start) NO_START=1 ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --dry-run) DRY=1 ;;
    --launchd) LAUNCHD=1 ;;
    --systemd-version) SYSTEMD_VERSION=${2:?--systemd-version needs a number}; shift ;;
    --print-docker-host) PRINT_DOCKER_HOST=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

# ---- the engine a LaunchAgent talks to -------------------------------------------------------------

# launchd starts agents with a bare environment: no DOCKER_HOST, no PATH to a docker CLI. The engine
# is found now, as the user's shell sees it: $DOCKER_HOST, the docker CLI's current context (unless
# it is the built-in default), then the sockets of Docker Desktop, Colima, OrbStack and the classic path.
docker_host() {
  if [ -n "$DOCKER_HOST_ARG" ]; then echo "$DOCKER_HOST_ARG"; return 0; fi
  if [ -n "${DOCKER_HOST:-}" ]; then echo "$DOCKER_HOST"; return 0; fi
  if command -v docker >/dev/null 2>&1; then
    local ctx endpoint
    ctx=$(docker context show 2>/dev/null || true)
    if [ -n "$ctx" ] && [ "$ctx" != default ]; then
      endpoint=$(docker context inspect --format '{{.Endpoints.docker.Host}}' "$ctx" 2>/dev/null || true)
      case "$endpoint" in
        unix://*) [ -S "${endpoint#unix://}" ] && { echo "$endpoint"; return 0; } ;;
        ?*://*) echo "$endpoint"; return 0 ;;
      esac
    fi
  fi
  local sock
  for sock in "$HOME/.docker/run/docker.sock" "$HOME/.colima/default/docker.sock" "$HOME/.orbstack/run/docker.sock" /var/run/docker.sock; do
    if [ -S "$sock" ]; then echo "unix://$sock"; return 0; fi
  done
  return 1
}

if [ "$PRINT_DOCKER_HOST" = 1 ]; then
  docker_host || die "no Docker engine found: looked at \$DOCKER_HOST, the docker CLI's context, ~/.docker/run/docker.sock (Docker Desktop), ~/.colima/default/docker.sock (Colima), ~/.orbstack/run/docker.sock (OrbStack), /var/run/docker.sock"
  exit 0
fi

[ -n "$MODE" ] || { usage >&2; die "say --system or --user"; }
[ "$MODE" = system ] && [ "$LAUNCHD" = 1 ] && [ "$(uname -s)" = Darwin ] && die "--system is for systemd; on macOS use --user (a LaunchAgent)"
[ "$MODE" = system ] && LAUNCHD=0
case "$PROTECT_HOME" in yes | read-only) ;; *) die "--protect-home takes yes or read-only, not $PROTECT_HOME" ;; esac
case "$SYSTEMD_VERSION" in '' | *[!0-9]*) [ -z "$SYSTEMD_VERSION" ] || die "--systemd-version takes a number" ;; esac
if [ -n "$ROOT" ]; then
  case "$ROOT" in /*) ;; *) ROOT=$(pwd -P)/$ROOT ;; esac
  ROOT=${ROOT%/}
  NO_START=1
fi

# Commands that change the machine: printed under --dry-run, skipped under --root.
run() {
  if [ "$DRY" = 1 ]; then echo "+ $*"; return 0; fi
  if [ -n "$ROOT" ]; then note "skipped under --root: $*"; return 0; fi
  "$@"
}

# write_file DEST MODE: stdin to $ROOT$DEST (directories made as needed); printed under --dry-run.
write_file() {
  local dest=$ROOT$1 mode=$2
  if [ "$DRY" = 1 ]; then
    echo "--- would write $dest (mode $mode):"
    cat
    echo "---"
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp=$(mktemp "$(dirname "$dest")/.berth-install.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
  note "wrote $dest"
}

remove_file() {
  local dest=$ROOT$1
  [ -e "$dest" ] || [ -L "$dest" ] || return 0
  if [ "$DRY" = 1 ]; then echo "+ rm -f $dest"; return 0; fi
  rm -f "$dest"
  note "removed $dest"
}

# Paths go into unit files and a plist: no whitespace, quotes, '%' (a systemd specifier), '&', '<'.
plain_path() {
  case "$2" in
    /*) ;;
    *) die "$1 must be an absolute path: $2" ;;
  esac
  if printf '%s' "$2" | grep -q '[^A-Za-z0-9._/+@,:=~-]'; then
    die "$1 has characters a unit file would need quoted (spaces, quotes, %, &): $2; use a plainer path"
  fi
}

# ---- systemd ----------------------------------------------------------------------------------------

systemd_running() { [ -d /run/systemd/system ]; }

systemd_version() {
  if [ -n "$SYSTEMD_VERSION" ]; then echo "$SYSTEMD_VERSION"; return; fi
  local v
  v=$( (systemctl --version 2>/dev/null || systemd-analyze --version 2>/dev/null) | awk 'NR == 1 { print $2 }')
  case "$v" in '' | *[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

# systemd-analyze verify on the unit as written, with its drop-in when this systemd-analyze is new
# enough to know its keys (the ExecStart binary is checked too). Verified as a copy: the result does
# not depend on what else is in the unit directory. A unit it complains about is removed again
# and nothing is enabled.
verify_unit() {
  local file=$ROOT$1 scope=$2 dropin=$3
  [ "$DRY" = 1 ] && { echo "+ systemd-analyze verify $scope $file"; return 0; }
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    note "systemd-analyze not found: the unit was not verified"
    return 0
  fi
  local out rc=0 dir analyzer
  dir=$(mktemp -d)
  cp "$file" "$dir/berthd.service"
  analyzer=$(systemd-analyze --version 2>/dev/null | awk 'NR == 1 { print $2 }')
  if [ -n "$dropin" ] && [ -f "$ROOT$dropin" ] && [ "${analyzer:-0}" -ge "$RESTART_KEYS_SINCE" ] 2>/dev/null; then
    mkdir "$dir/berthd.service.d" && cp "$ROOT$dropin" "$dir/berthd.service.d/"
  fi
  mkdir "$dir/xdg"
  out=$(XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$dir/xdg} systemd-analyze verify $scope "$dir/berthd.service" 2>&1) || rc=$?
  rm -rf "$dir"
  # Any complaint counts: a line this systemd does not take (a key it does not know, a value it
  # cannot parse) is ignored when the unit runs, and with it the hardening it stood for.
  if [ "$rc" != 0 ] || [ -n "$out" ]; then
    rm -f "$file"
    [ -z "$dropin" ] || rm -f "$ROOT$dropin"
    die "systemd-analyze verify rejected $file (removed again):
$out"
  fi
  note "systemd-analyze verify $file: ok"
}

render_unit() {
  sed -e "s|@NODE@|$NODE|g" -e "s|@BERTH_ROOT@|$BERTH_ROOT|g" -e "s|@PROJECTS_ROOT@|$PROJECTS_ROOT|g" \
    -e "s|@PROTECT_HOME@|$PROTECT_HOME|g" "$1"
}

find_node() {
  if [ -z "$NODE" ]; then
    NODE=$(command -v node 2>/dev/null || true)
    if [ -z "$NODE" ]; then
      [ -n "${SUDO_USER:-}" ] && die "no node on sudo's PATH: pass yours, e.g. sudo $0 $MODE --node \"\$(command -v node)\""
      die "no node on PATH: install Node 20 or newer, or pass --node PATH"
    fi
  fi
  [ -x "$NODE" ] || die "--node $NODE is not an executable"
  NODE=$(cd "$(dirname "$NODE")" && pwd -P)/$(basename "$NODE")
  local v
  v=$("$NODE" -p 'process.versions.node' 2>/dev/null) || die "$NODE does not run"
  [ "${v%%.*}" -ge 20 ] 2>/dev/null || die "$NODE is node $v; berthd needs 20 or newer (pass --node PATH)"
  plain_path "node" "$NODE"
}

check_checkout() {
  plain_path "this checkout" "$BERTH_ROOT"
  [ -f "$BERTH_ROOT/daemon/dist/boot.js" ] || die "$BERTH_ROOT is not built: run \`npm ci\` there first"
}

install_systemd() {
  local unit dropin_dir scope ctl
  if [ "$MODE" = system ]; then
    unit=/etc/systemd/system/berthd.service
    scope=
    ctl=(systemctl)
    PROJECTS_ROOT=${PROJECTS_ROOT:-/srv/berth/projects}
  else
    unit=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/berthd.service
    scope=--user
    ctl=(systemctl --user)
    PROJECTS_ROOT=${PROJECTS_ROOT:-$HOME/projects}
  fi
  dropin_dir=$unit.d
  local dropin=$dropin_dir/10-restart-backoff.conf

  if [ "$UNINSTALL" = 1 ]; then
    if [ "$NO_START" = 0 ] && systemd_running; then
      run "${ctl[@]}" disable --now berthd.service || warn "could not disable berthd (not installed?)"
    fi
    remove_file "$dropin"
    [ "$DRY" = 1 ] || [ ! -d "$ROOT$dropin_dir" ] || rmdir "$ROOT$dropin_dir" 2>/dev/null || true
    remove_file "$unit"
    if [ "$NO_START" = 0 ] && systemd_running; then run "${ctl[@]}" daemon-reload || warn "${ctl[*]} daemon-reload failed"; fi
    if [ "$MODE" = system ]; then
      note "kept: /var/lib/berth (state), /etc/berth, $GROUP (group), the projects"
    else
      note "kept: ~/.berth (state), ~/.config/berth, the projects"
    fi
    return 0
  fi

  find_node
  check_checkout
  plain_path "--projects-root" "$PROJECTS_ROOT"

  if [ "$MODE" = system ]; then
    if [ "$PROTECT_HOME" = yes ]; then
      local p
      for p in "$PROJECTS_ROOT" "$BERTH_ROOT" "$NODE"; do
        case "$p/" in /home/* | /root/* | /run/user/*) die "--protect-home yes hides $p from berthd: keep read-only, or move it out of /home and /root" ;; esac
      done
    fi
    # A root service runs whatever this checkout and this node contain.
    local p owner
    for p in "$BERTH_ROOT" "$BERTH_ROOT/daemon/dist" "$NODE"; do
      owner=$(stat -c %u "$p" 2>/dev/null || stat -f %u "$p")
      [ "$owner" = 0 ] || warn "$p belongs to uid $owner, and berthd will run it as root: whoever can write it can become root (install berth under /opt/berth, owned by root)"
    done
    if [ -z "$ROOT" ]; then
      if getent group "$GROUP" >/dev/null 2>&1; then
        note "group $GROUP exists"
      else
        run groupadd --system "$GROUP"
      fi
      if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        if id -nG "$SUDO_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$GROUP"; then
          note "$SUDO_USER is in group $GROUP"
        else
          run usermod -aG "$GROUP" "$SUDO_USER"
          note "added $SUDO_USER to group $GROUP: log out and in again (or \`newgrp $GROUP\`) before using berth"
        fi
      fi
    else
      note "skipped under --root: groupadd --system $GROUP, usermod -aG $GROUP \$SUDO_USER"
    fi
    if [ ! -d "$ROOT$PROJECTS_ROOT" ]; then
      # Members of group berth keep their projects there (their own directories: sticky, like /tmp).
      if [ "$DRY" = 1 ]; then
        echo "+ install -d -m 1770 -g $GROUP $ROOT$PROJECTS_ROOT"
      elif [ -n "$ROOT" ]; then
        mkdir -p "$ROOT$PROJECTS_ROOT" && chmod 1770 "$ROOT$PROJECTS_ROOT"
      else
        mkdir -p "$PROJECTS_ROOT" && chgrp "$GROUP" "$PROJECTS_ROOT" && chmod 1770 "$PROJECTS_ROOT"
      fi
    fi
  else
    [ "$(id -u)" != 0 ] || [ -n "$ROOT" ] || [ "$DRY" = 1 ] || warn "--user as root: root's own user manager; for a machine-wide berthd use --system"
    [ "$DRY" = 1 ] || mkdir -p "$ROOT$PROJECTS_ROOT"
    if [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ] && [ -z "${DOCKER_HOST:-}" ]; then
      warn "you may not use /var/run/docker.sock: join the docker group (sudo usermod -aG docker \"\$USER\", then log in again), or set DOCKER_HOST in ~/.config/berth/berthd.env"
    fi
  fi

  render_unit "$BERTH_ROOT/systemd/$([ "$MODE" = system ] && echo berthd.service || echo berthd-user.service)" | write_file "$unit" 0644
  local version
  version=$(systemd_version)
  if [ "$version" -ge "$RESTART_KEYS_SINCE" ]; then
    write_file "$dropin" 0644 <"$BERTH_ROOT/systemd/berthd-restart.conf"
  else
    remove_file "$dropin"
    [ "$DRY" = 1 ] || [ ! -d "$ROOT$dropin_dir" ] || rmdir "$ROOT$dropin_dir" 2>/dev/null || true
    note "systemd $version: restarts every 2 s (a growing delay needs systemd $RESTART_KEYS_SINCE; its drop-in is not installed)"
  fi
  verify_unit "$unit" "$scope" "$dropin"

  if [ "$NO_START" = 1 ]; then
    note "not started (--no-start/--root): run \`${ctl[*]} daemon-reload && ${ctl[*]} enable --now berthd\`"
  elif ! systemd_running && [ "$DRY" = 0 ]; then
    note "systemd is not running here (no /run/systemd/system): the unit is written; where systemd runs: ${ctl[*]} daemon-reload && ${ctl[*]} enable --now berthd"
  elif [ "$MODE" = user ] && [ "$DRY" = 0 ] && ! systemctl --user show-environment >/dev/null 2>&1; then
    note "no user manager answers (logged in through su or sudo?): the unit is written; from a login session: systemctl --user daemon-reload && systemctl --user enable --now berthd"
  else
    run "${ctl[@]}" daemon-reload
    run "${ctl[@]}" enable --now berthd.service
    if [ "$DRY" = 1 ]; then
      :
    elif [ "$MODE" = system ]; then
      note "started: berth status (as a member of group $GROUP); logs: journalctl -u berthd"
    else
      note "started: berth status; logs: journalctl --user -u berthd; keep it running after logout: loginctl enable-linger \"\$USER\""
    fi
  fi
}

# ---- launchd ----------------------------------------------------------------------------------------

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

validate_plist() {
  local file=$ROOT$1
  [ "$DRY" = 1 ] && return 0
  if command -v plutil >/dev/null 2>&1; then
    plutil -lint "$file" >/dev/null || { rm -f "$file"; die "plutil -lint rejected $file (removed again)"; }
  elif command -v xmllint >/dev/null 2>&1; then
    xmllint --noout "$file" || { rm -f "$file"; die "xmllint rejected $file (removed again)"; }
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import plistlib, sys; plistlib.load(open(sys.argv[1], "rb"))' "$file" || { rm -f "$file"; die "$file is not a valid plist (removed again)"; }
  else
    note "no plutil, xmllint or python3: $file was not validated"
    return 0
  fi
  note "$file is a valid plist"
}

install_launchd() {
  [ "$MODE" = user ] || die "macOS runs berthd as a LaunchAgent: use --user"
  local plist=$HOME/Library/LaunchAgents/$LABEL.plist domain
  domain=gui/$(id -u)
  local can_launch=0
  [ "$NO_START" = 0 ] && command -v launchctl >/dev/null 2>&1 && can_launch=1

  if [ "$UNINSTALL" = 1 ]; then
    [ "$can_launch" = 0 ] || run launchctl bootout "$domain/$LABEL" || warn "launchctl bootout: not loaded"
    remove_file "$plist"
    note "kept: ~/.berth (state), ~/Library/Logs/berth, the projects"
    return 0
  fi

  find_node
  check_checkout
  PROJECTS_ROOT=${PROJECTS_ROOT:-$HOME/projects}
  plain_path "--projects-root" "$PROJECTS_ROOT"
  plain_path "HOME" "$HOME"
  local host
  host=$(docker_host) || die "no Docker engine found: looked at \$DOCKER_HOST, the docker CLI's context, ~/.docker/run/docker.sock (Docker Desktop), ~/.colima/default/docker.sock (Colima), ~/.orbstack/run/docker.sock (OrbStack), /var/run/docker.sock; start one, or pass --docker-host URL"
  note "engine: $host"

  [ "$DRY" = 1 ] || mkdir -p "$ROOT$HOME/Library/LaunchAgents" "$ROOT$HOME/Library/Logs/berth" "$ROOT$PROJECTS_ROOT"
  local e_node e_root e_home e_projects e_host
  e_node=$(printf '%s' "$NODE" | xml_escape)
  e_root=$(printf '%s' "$BERTH_ROOT" | xml_escape)
  e_home=$(printf '%s' "$HOME" | xml_escape)
  e_projects=$(printf '%s' "$PROJECTS_ROOT" | xml_escape)
  e_host=$(printf '%s' "$host" | xml_escape | sed -e 's/[|\\&]/\\&/g')
  sed -e "s|@NODE@|$e_node|g" -e "s|@BERTH_ROOT@|$e_root|g" -e "s|@PROJECTS_ROOT@|$e_projects|g" \
    -e "s|@HOME@|$e_home|g" -e "s|@DOCKER_HOST@|$e_host|g" "$BERTH_ROOT/launchd/$LABEL.plist" | write_file "$plist" 0644
  validate_plist "$plist"

  if [ "$can_launch" = 1 ]; then
    # A loaded agent keeps its old definition until it is booted out.
    launchctl print "$domain/$LABEL" >/dev/null 2>&1 && run launchctl bootout "$domain/$LABEL"
    run launchctl bootstrap "$domain" "$plist"
    run launchctl kickstart -k "$domain/$LABEL"
    [ "$DRY" = 1 ] || note "started: berth status; logs in ~/Library/Logs/berth/"
  elif [ "$NO_START" = 1 ]; then
    note "not started (--no-start/--root): run \`launchctl bootstrap $domain $plist\`"
  else
    note "launchctl not found (not macOS?): the plist is written, nothing started"
  fi
}

if [ "$MODE" = system ] && [ "$(id -u)" != 0 ] && [ -z "$ROOT" ] && [ "$DRY" = 0 ]; then
  die "--system needs root: sudo $0 --system ... (or --root DIR / --dry-run to stage or preview)"
fi
if [ "$MODE" = user ] && [ -n "${SUDO_USER:-}" ] && [ "$(id -u)" = 0 ] && [ -z "$ROOT" ] && [ "$DRY" = 0 ]; then
  die "--user installs for the user running it: run it without sudo"
fi

if [ "$LAUNCHD" = 1 ]; then install_launchd; else install_systemd; fi
