// Package kernel is the only package that sees the kernel programs: it loads
// them, attaches them, reads the ring buffer and turns raw records into the
// agent's own event types.
package kernel

// The generated Go types and embedded objects are committed; `make generate`
// refreshes them with the pinned clang (BPF2GO_CC) and CI checks they are fresh.
//go:generate go tool bpf2go -cc ${BPF2GO_CC} -strip ${BPF2GO_STRIP} -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type wp_event_hdr -type wp_exec_event -type wp_clone_event -type wp_exit_event -type wp_config -type wp_event_type -type wp_stat -type wp_flags -type wp_config_flags -type wp_file_event -type wp_net_event -type wp_sec_event -type wp_memfd_exec_event -type wp_sys_desc -type wp_path_key -type wp_cidr_key -type wp_exe_key -type wp_filter_action -type wp_sys_class -type wp_path_kind -type wp_net_op -type wp_sec_op -type wp_ns_event -type wp_ns_op -type wp_ns_index -type wp_env_key -type wp_env_mode -type wp_env_limit -type wp_args_split -type wp_resp_rule -type wp_resp_masks -type wp_resp_proc -type wp_resp_config -type wp_resp_event -type wp_resp_limit -type wp_resp_hook -type wp_resp_need -type wp_resp_mode -type wp_resp_flags -type wp_ics_event -type wp_ics_adu -type wp_ics_tuple -type wp_ics_stat -type wp_ics_flags -type wp_ics_limit -type wp_ics_proto wp ../../bpf/watchpost.bpf.c -- -I../../bpf/include
