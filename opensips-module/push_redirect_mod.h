/*
 * push_redirect module for OpenSIPS - what its files share.  A thin module:
 * the reply parser, the decision engine and the forwarding store are the
 * Rust core's (include/push_redirect.h), the Kamailio module's own.
 *   push_redirect.c        exports, parameters, statistics, life cycle,
 *                          the core's callbacks (usrloc, "myself", log)
 *   push_redirect_funcs.c  the script functions
 *   push_redirect_mi.c     the MI commands
 */

#ifndef _PUSH_REDIRECT_MOD_H_
#define _PUSH_REDIRECT_MOD_H_

#include "str.h"
#include "statistics.h"
#include "parser/msg_parser.h"
#include "mi/mi.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"

#include "push_redirect.h"

/* bound in mod_init() */
extern struct tm_binds prm_tmb;
extern usrloc_api_t prm_ul;
extern udomain_t *prm_udomain;

/* the statistics, indexed by pr_stat (names: pr_stat_name()) */
extern stat_var *prm_stats[PR_STAT_COUNT];

/* the AVP ids (mod_init()): the core's memo, an AVP of the request and
 * then of its transaction; a branch's History-Info and Diversion values,
 * attributes of the branch */
extern int prm_avp_memo, prm_avp_hi, prm_avp_div;

/* this process' engine (made after the fork, on first need); NULL when it
 * cannot be made (logged) */
pr_engine *prm_engine_get(void);

/* text of a pr_status, for log lines (static buffer: use it at once) */
const char *prm_status_str(pr_status st);

/* what counters (PR_STAT_COUNT of them) add to the statistics */
void prm_count(const uint32_t *counters);

/* the script functions (push_redirect_funcs.c) */
int w_push_lookup(struct sip_msg *msg, str *mode);
int w_push_redirect(struct sip_msg *msg, str *mode);

/* the MI commands (push_redirect_mi.c) */
extern const mi_export_t prm_mi_cmds[];

/* a str as a pr_bytes (borrowed) */
#define PRM_BYTES(_b, _s)                                           \
	do {                                                            \
		(_b).ptr = (const uint8_t *)(_s).s;                         \
		(_b).len = ((_s).s && (_s).len > 0) ? (size_t)(_s).len : 0; \
	} while(0)

#endif
