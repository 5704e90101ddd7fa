//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The single compilation unit of Watchpost's kernel programs. */

#include "process.h"
#include "file.h"
#include "net.h"
#include "security.h"
#include "namespace.h"
#include "respond.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
