#!/bin/sh
# /usr/local/bin/task-master, task-master-ai and task-master-mcp: task-master-ai (in /opt/task-master)
# through the Claude bridge. Its anthropic provider (the Vercel AI SDK) posts to
# $ANTHROPIC_BASE_URL/messages, which the bridge relays as /v1/messages, but will not call without
# ANTHROPIC_API_KEY: in a berth session that is a placeholder the bridge drops (berthd sends the host's
# credential). A key of the user's own (the environment, or the project's .env) is left as it is.
case $(basename "$0") in
  task-master-ai) bin=task-master-ai ;;
  task-master-mcp) bin=task-master-mcp ;;
  *) bin=task-master ;;
esac
if [ -n "${CLAUDE_BRIDGE_SOCKET:-}" ] && [ -z "${ANTHROPIC_API_KEY:-}" ]; then
  export ANTHROPIC_API_KEY=berth-bridge
fi
exec "/opt/task-master/bin/$bin" "$@"
