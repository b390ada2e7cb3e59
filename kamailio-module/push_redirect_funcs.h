/*
 * push_redirect module - glue between Kamailio and the Rust core
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * The C side only reads the transaction and the location table out of
 * Kamailio and writes the Rust core's decision back into it (R-URI,
 * destination set, fr timeout): every decision is made by the core.
 */

#ifndef _PUSH_REDIRECT_FUNCS_H_
#define _PUSH_REDIRECT_FUNCS_H_

#include "core/counters.h"
#include "core/parser/msg_parser.h"
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

/* statistics (SPEC names), registered in mod_init() */
extern stat_var *prm_st_redirects_followed;
extern stat_var *prm_st_failovers;
extern stat_var *prm_st_forwardings_learned;
extern stat_var *prm_st_forwardings_applied;
extern stat_var *prm_st_targets_refused;
extern stat_var *prm_st_loops_prevented;
extern stat_var *prm_st_contacts_dropped;

/* text for a pr_status, for log lines (a static buffer: use it before
 * the next call) */
const char *prm_status_str(pr_status st);

/* route the core's log lines into Kamailio's log */
void prm_log_bridge(
		void *userdata, pr_log_level level, const uint8_t *msg, size_t len);

/* once, in mod_init(): children forget an engine made before their fork */
int prm_engine_fork_guard(void);
/* create this process' engine (once per process); 0 or -1 */
int prm_engine_init(void);
/* this process' engine, or NULL */
pr_engine *prm_engine_get(void);
/* free the engine if this process created it */
void prm_engine_destroy(void);

/* script functions */
int w_push_lookup(struct sip_msg *msg, char *mode, char *p2);
int w_push_redirect(struct sip_msg *msg, char *mode, char *p2);

#endif
