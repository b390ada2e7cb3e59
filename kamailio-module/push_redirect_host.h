/*
 * push_redirect module - between Kamailio and the Rust core
 *
 * This file is part of push_redirect, a Kamailio module.
 */

#ifndef _PUSH_REDIRECT_HOST_H_
#define _PUSH_REDIRECT_HOST_H_

#include "core/parser/msg_parser.h"
#include "modules/tm/h_table.h"

#include "push_redirect_mod.h"

/* the engine's callbacks (pr_engine_new) */
int32_t prm_lookup(void *userdata, const pr_aor *aor, pr_contacts *out);
bool prm_is_self(
		void *userdata, const uint8_t *host, size_t host_len, uint16_t port);
void prm_log_bridge(
		void *userdata, pr_log_level level, const uint8_t *msg, size_t len);

/* the request's part of a decision's input; ruri: the current R-URI in a
 * request route, the original one ($ou) in a failure route; mode: the
 * script's argument (NULL or empty: fork_mode); 0 or -1 */
int prm_read_request(
		struct sip_msg *msg, str *ruri, str *mode, pr_request *req);

/* branches described without an allocation (more: pkg memory) */
#define PRM_BRANCHES_ON_STACK 8

/* the transaction's branches and the memo it keeps, for
 * pr_push_redirect(); the branches go into `stack` when they fit, else
 * into pkg memory that prm_failure_free() releases; *had_memo: whether
 * the transaction keeps a memo; 0 or -1 */
int prm_read_failure(
		struct cell *t, pr_branch *stack, pr_failure *f, int *had_memo);
void prm_failure_free(pr_failure *f, pr_branch *stack);

/* write a decision into Kamailio: its branches (the first into the R-URI
 * when first_to_ruri: request route; else all appended: failure route of
 * transaction t) and the branch timeout; 0 or -1 */
int prm_apply(struct sip_msg *msg, const pr_decision_view *v,
		int first_to_ruri, struct cell *t, str *callid);

/* a failure route's decision's memo, kept with the transaction in place
 * of the one it had (had_memo, from prm_read_failure()); 0 or -1 */
int prm_keep_memo(const pr_decision_view *v, int had_memo, str *callid);

/* what a decision adds to the statistics */
void prm_count(const pr_decision_view *v);

#endif
