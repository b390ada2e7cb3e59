/*
 * push_redirect module - per-branch headers (History-Info, Diversion)
 *
 * This file is part of push_redirect, a Kamailio module.
 */

#ifndef _PUSH_REDIRECT_HDR_H_
#define _PUSH_REDIRECT_HDR_H_

#include "core/parser/msg_parser.h"
#include "modules/tm/h_table.h"

#include "push_redirect_mod.h"

/* the request's History-Info rows (into rows[], PR_MAX_HISTORY_INFO_ROWS
 * + 1 of them) and Privacy header, into req (after prm_read_request());
 * 0 or -1 */
int prm_hdr_read(struct sip_msg *msg, pr_request *req, pr_bytes *rows);

/* a decision's per-branch History-Info and Diversion values: nothing when
 * no branch has any; a failure round's (t, the transaction) one branch's
 * as headers of msg, the faked request t_relay() relays; else kept in this
 * process for the callback of transaction t (NULL in a request route: the
 * one t_relay() creates) that adds them to each branch as tm builds it;
 * 0 or -1 */
int prm_hdr_keep(struct sip_msg *msg, const pr_decision_view *v,
		struct cell *t, str *callid);

#endif
