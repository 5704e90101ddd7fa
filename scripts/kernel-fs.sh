# Sourced by scripts that load BPF programs: makes sure tracefs and bpffs
# are mounted, and remembers what it mounted so wp_unmount_kernel_fs can
# leave the machine as it was.
WP_MOUNTED=()
wp_mount_kernel_fs() {
	if [ "$(id -u)" != 0 ]; then return 0; fi
	if ! mountpoint -q /sys/kernel/tracing 2>/dev/null && [ ! -d /sys/kernel/tracing/events ]; then
		mount -t tracefs tracefs /sys/kernel/tracing && WP_MOUNTED+=(/sys/kernel/tracing)
	fi
	if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
		mount -t bpf bpf /sys/fs/bpf && WP_MOUNTED+=(/sys/fs/bpf)
	fi
}
wp_unmount_kernel_fs() {
	local m
	for m in "${WP_MOUNTED[@]}"; do umount "$m" || true; done
	WP_MOUNTED=()
}
