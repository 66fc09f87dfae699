# Sourced by scripts/demo.sh and scripts/stop.sh: truthful answers about the processes the demo started.
# A pid file can outlive its process: the pid may be gone, belong to a zombie (ended, not yet reaped by
# its parent), or have been reused by an unrelated process. None of these is "running".

# process_alive PID: succeed if PID exists and is not a zombie.
process_alive() {
  local stat state
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  state="${stat##*) }"    # the field after the command name, which may itself hold ") "
  state="${state%% *}"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# running_pid FILE PATTERN: print the pid held in FILE and succeed if that process is alive and its
# command line contains PATTERN (so a reused pid does not count); fail otherwise, printing nothing.
running_pid() {
  local pid cmdline
  [ -f "$1" ] || return 1
  pid="$(tr -dc '0-9' < "$1")"
  [ -n "$pid" ] && process_alive "$pid" || return 1
  cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$2"* ]] || return 1
  echo "$pid"
}

# wait_until_ended PID TRIES: poll every 0.2 s until PID is no longer alive; fail if it still is.
wait_until_ended() {
  local _
  for _ in $(seq 1 "$2"); do process_alive "$1" || return 0; sleep 0.2; done
  ! process_alive "$1"
}

# end_process PID: SIGTERM, up to 10 s to end, then SIGKILL. Always succeeds.
end_process() {
  kill -TERM "$1" 2>/dev/null || true
  wait_until_ended "$1" 50 || kill -KILL "$1" 2>/dev/null || true
}
