#!/bin/sh
# /usr/local/bin/claude: checks that the Claude bridge answers, then execs the real Claude Code (same
# process, so arguments, stdio, exit status and signals are its own). Claude Code reaches the bridge as
# ANTHROPIC_BASE_URL=http://127.0.0.1:$BERTH_BRIDGE_PORT, which berth's entrypoint forwards to the Unix
# socket berthd serves at $CLAUDE_BRIDGE_SOCKET (client-sdk/src/protocol/bridge.ts). Without this check a
# missing bridge shows as a model error after Claude Code's retries; here it is one clear line and exit 2.
REAL=${BERTH_CLAUDE_BIN:-/opt/claude-code/bin/claude}
PORT=${BERTH_BRIDGE_PORT:-3998}
SOCK=${CLAUDE_BRIDGE_SOCKET:-}

fail() {
  printf 'claude (berth): %s\n' "$@" >&2
  exit 2
}

[ -x "$REAL" ] || fail "Claude Code is not installed in this image ($REAL is missing)." \
  "Build the image with --build-arg CLAUDE_CODE=1 (the default)."

if [ -z "$SOCK" ]; then
  # Outside berth a credential of the user's own works: Claude Code then talks to the API directly.
  if [ -n "${ANTHROPIC_API_KEY:-}${CLAUDE_CODE_OAUTH_TOKEN:-}" ]; then
    [ "${ANTHROPIC_BASE_URL:-}" = "http://127.0.0.1:$PORT" ] && unset ANTHROPIC_BASE_URL
    [ "${ANTHROPIC_AUTH_TOKEN:-}" = berth-bridge ] && unset ANTHROPIC_AUTH_TOKEN
    exec "$REAL" "$@"
  fi
  fail "no Claude bridge: CLAUDE_BRIDGE_SOCKET is not set, so this container was not started by berth" \
    "(the image is used outside berth). Set ANTHROPIC_API_KEY (docker run -e ANTHROPIC_API_KEY=...)," \
    "or start the agent with \`berth start\`, which connects it to the host's Claude credential."
fi

if [ ! -e "$SOCK" ]; then
  fail "the Claude bridge socket $SOCK does not exist." \
    "berthd makes it when it starts the session and mounts its directory at $(dirname "$SOCK");" \
    "is berthd running? \`berth status\` on the host. The bridge comes back when berthd restarts, no container restart needed."
fi
[ -S "$SOCK" ] || fail "$SOCK exists but is not a socket: the container's /host mount is not berth's bridge directory."

# -w prints the status even when curl fails (000 then); the exit status tells why it failed.
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SOCK" http://berth-bridge/health 2>/dev/null)
rc=$?
if [ "$rc" != 0 ] || [ "$code" != 200 ]; then
  case $rc in
    0) why="it answered HTTP $code" ;;
    7) why="nothing accepts connections on it (a socket left by a berthd that is gone)" ;;
    28) why="it did not answer within 2 s" ;;
    *) why="curl exit $rc" ;;
  esac
  fail "berthd is not answering on the Claude bridge $SOCK: $why." \
    "Is berthd running? \`berth status\` on the host. The bridge comes back when berthd restarts, no container restart needed."
fi

# The loopback forwarder is berth's entrypoint; a container started with another --entrypoint lacks it.
if [ "${ANTHROPIC_BASE_URL:-}" = "http://127.0.0.1:$PORT" ]; then
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health" 2>/dev/null)
  [ "$code" = 200 ] || fail "the bridge answers on $SOCK but nothing forwards 127.0.0.1:$PORT to it (HTTP ${code:-000})." \
    "berth's entrypoint (/opt/berth/entrypoint.mjs) does that: run the container with the image's own entrypoint."
fi

exec "$REAL" "$@"
