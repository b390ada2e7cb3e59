/*
 * push_redirect module - what its files share
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * The module is thin: the reply parser, the decision engine and the
 * forwarding store live in the Rust core (include/push_redirect.h).  Its
 * files:
 *   push_redirect.c        exports, parameters, statistics, life cycle
 *   push_redirect_funcs.c  one glue function per script function, behind
 *                          thin script wrappers
 *   push_redirect_host.c   what the core asks Kamailio (usrloc, "myself",
 *                          logging) and what the glue reads from and
 *                          writes into Kamailio (request, transaction,
 *                          branches, memo, statistics)
 *   push_redirect_hdr.c    per-branch History-Info and Diversion (a tm
 *                          callback adds each branch's own values)
 *   push_redirect_rpc.c    the RPC commands
 */

#ifndef _PUSH_REDIRECT_MOD_H_
#define _PUSH_REDIRECT_MOD_H_

#include "core/counters.h"
#include "core/str.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"

#include "push_redirect.h"

/* bound in mod_init() */
extern struct tm_binds prm_tmb;
extern usrloc_api_t prm_ul;

/* the usrloc table for AORs (modparam location_table) */
extern str prm_location_table;
/* registered with usrloc in the main process, before the fork */
extern udomain_t *prm_udomain;

/* the core's configuration, filled by the modparams; owned by the module */
extern pr_config *prm_cfg;

/* the statistics, indexed by pr_stat (names: pr_stat_name()) */
extern stat_var *prm_stats[PR_STAT_COUNT];

/* this process' engine, or NULL (a child forgets its parent's) */
extern pr_engine *prm_engine;

/* text for a pr_status, for log lines (a static buffer: use it before
 * the next call) */
const char *prm_status_str(pr_status st);

#endif
