# Bare metal: the appliance booted by UEFI firmware through systemd-boot as a single node
# (machine `efi`, one master, worker and FUSE mount of a local:// dataset holding hello.txt).
units = ["weir-master.service", "weir-worker.service", "weir-fuse@local.service"]

with subtest("UEFI: systemd-boot starts the appliance, which runs a single node"):
    efi.start()
    efi.wait_for_unit("multi-user.target", timeout=900)
    efi.succeed("test -d /sys/firmware/efi")
    # systemd-boot sets LoaderInfo (vendor GUID 4a67b082-0a4c-41cf-b6c7-440b29bb8c4f).
    efi.succeed("busybox ls /sys/firmware/efi/efivars "
                "| busybox grep -q '^LoaderInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f$'")
    for u in units:
        efi.wait_for_unit(u, timeout=300)
    efi.succeed("curl -sfL -X POST http://127.0.0.1:19998/v1/datasets/local/sync")
    efi.wait_until_succeeds(
        "curl -sfL http://127.0.0.1:19998/v1/datasets/local | jq -e '.phase == \"Bound\"'",
        timeout=180)
    efi.wait_until_succeeds("busybox cat /mnt/weir/local/data/hello.txt "
                            "| busybox grep -q 'hello from the local store'", timeout=120)
    efi.shutdown()
