#!/bin/bash
# The QEMU harness's agent inside a test VM: reads "ID TIMEOUT BASE64-COMMAND" lines from a
# serial port and runs each command as the NixOS test driver does (`timeout TIMEOUT bash -c
# "set -euo pipefail; COMMAND"`, TIMEOUT 0 for none), then answers "@@OUT ID BASE64-STDOUT" and
# "@@RC ID STATUS". Only standard output comes back, as from the driver; standard error goes to
# /var/log/weir-test-agent.log. Base64 both ways: no prompt, echo or line discipline to parse.
port=$1
stty -F "$port" raw -echo 115200
exec <"$port" >"$port"
echo "@@AGENT ready"
while read -r id limit b64; do
        cmd="set -euo pipefail; $(printf '%s' "$b64" | base64 -d)"
        t=()
        [ "$limit" = 0 ] || t=(timeout "$limit")
        "${t[@]}" bash -c "$cmd" >/run/weir-test-agent.out 2>>/var/log/weir-test-agent.log </dev/null
        rc=$?
        out=$(base64 -w0 </run/weir-test-agent.out)
        printf '@@OUT %s %s\n' "$id" "$out"
        printf '@@RC %s %d\n' "$id" "$rc"
done
