/*
 * push_redirect module - RPC commands
 *
 * This file is part of push_redirect, a Kamailio module.
 */

#ifndef _PUSH_REDIRECT_RPC_H_
#define _PUSH_REDIRECT_RPC_H_

#include "core/rpc.h"

/* push_redirect.list/get/set/remove/stats */
extern rpc_export_t prm_rpc_cmds[];

#endif
