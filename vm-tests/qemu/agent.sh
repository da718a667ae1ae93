#!/bin/bash
# The QEMU harness's agent inside a test VM: reads "ID BASE64-COMMAND" lines from a serial port,
# runs each command with bash and answers "@@OUT ID BASE64-OUTPUT" then "@@RC ID STATUS".
# Base64 both ways: no prompt, echo or line discipline to parse.
port=$1
stty -F "$port" raw -echo 115200
exec <"$port" >"$port"
echo "@@AGENT ready"
while read -r id b64; do
        cmd=$(printf '%s' "$b64" | base64 -d)
        out=$(bash -c "$cmd" 2>&1 </dev/null)
        rc=$?
        printf '@@OUT %s %s\n' "$id" "$(printf '%s' "$out" | base64 -w0)"
        printf '@@RC %s %d\n' "$id" "$rc"
done
