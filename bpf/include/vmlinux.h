/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Selects the committed vmlinux.h of the target architecture.
 * scripts/gen-vmlinux.sh regenerates them. */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux/x86/vmlinux.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux/arm64/vmlinux.h"
#else
#error "unsupported target architecture: set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif
