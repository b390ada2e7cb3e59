/*
 * push_redirect module - script functions
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * One glue function per script function (as uac_redirect's
 * get_redirect()): it reads the request (and in a failure route the
 * transaction) out of Kamailio, asks the Rust core for a decision, and
 * writes the decision's one view back.  Thin wrappers read the script's
 * argument.  Nothing here decides: no policy in C.
 */

#include "core/dprint.h"
#include "core/mod_fix.h"
#include "core/ut.h"

#include "push_redirect_funcs.h"
#include "push_redirect_hdr.h"
#include "push_redirect_host.h"

/* the Call-ID of a request read by prm_read_request(), for log lines */
static str prm_callid(const pr_request *req)
{
	str s;

	s.s = (char *)req->call_id.ptr;
	s.len = (int)req->call_id.len;
	return s;
}

/* a script function never returns 0 (it would stop the script) */
#define PRM_SCRIPT_RC(_rc) (((_rc) == 0) ? -1 : (_rc))

int prm_push_lookup(struct sip_msg *msg, str *mode)
{
	pr_request req;
	pr_bytes rows[PR_MAX_HISTORY_INFO_ROWS + 1];
	pr_decision_view v;
	pr_decision *d;
	pr_status st;
	str callid;
	int rc;

	if(prm_engine == NULL) {
		LM_ERR("no push_redirect engine in this process\n");
		return -2;
	}
	if(prm_read_request(msg, GET_RURI(msg), mode, &req) < 0
			|| prm_hdr_read(msg, &req, rows) < 0)
		return -2;
	callid = prm_callid(&req);

	d = NULL;
	st = pr_push_lookup(prm_engine, &req, &d, &v);
	if(st != PR_STATUS_OK) {
		LM_ERR("push_lookup failed (Call-ID %.*s): %s\n", callid.len,
				ZSW(callid.s), prm_status_str(st));
		return -2;
	}
	rc = v.script_rc;
	/* the memo (History-Info's entries) and the per-branch headers go
	 * with the message into the transaction t_relay() creates */
	if(rc == 1
			&& (prm_apply(msg, &v, 1, NULL, &callid) < 0
					|| prm_keep_memo(&v, 1, &callid) < 0
					|| prm_hdr_keep(msg, &v, NULL, &callid) < 0))
		rc = -2;
	prm_count(&v);
	pr_decision_free(d);
	return PRM_SCRIPT_RC(rc);
}

int prm_push_redirect(struct sip_msg *msg, str *mode)
{
	pr_request req;
	pr_bytes rows[PR_MAX_HISTORY_INFO_ROWS + 1];
	pr_branch stack[PRM_BRANCHES_ON_STACK];
	pr_failure f;
	pr_decision_view v;
	pr_decision *d;
	pr_status st;
	struct cell *t;
	str callid;
	int had_memo;
	int rc;

	if(prm_engine == NULL) {
		LM_ERR("no push_redirect engine in this process\n");
		return -2;
	}
	t = prm_tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED) {
		LM_ERR("no transaction: push_redirect() belongs in a failure"
			   " route\n");
		return -2;
	}
	/* $ou: the R-URI as the request arrived */
	if(prm_read_request(msg, &msg->first_line.u.request.uri, mode, &req)
					< 0
			|| prm_hdr_read(msg, &req, rows) < 0)
		return -2;
	callid = prm_callid(&req);
	if(prm_read_failure(t, stack, &f, &had_memo) < 0) {
		LM_ERR("no branches in the transaction (Call-ID %.*s)\n",
				callid.len, ZSW(callid.s));
		return -2;
	}

	d = NULL;
	st = pr_push_redirect(prm_engine, &req, &f, &d, &v);
	if(st != PR_STATUS_OK) {
		LM_ERR("push_redirect failed (Call-ID %.*s): %s\n", callid.len,
				ZSW(callid.s), prm_status_str(st));
		prm_failure_free(&f, stack);
		return -2;
	}
	rc = v.script_rc;
	if(rc == 1
			&& (prm_apply(msg, &v, 0, t, &callid) < 0
					|| prm_keep_memo(&v, had_memo, &callid) < 0
					|| prm_hdr_keep(msg, &v, t, &callid) < 0))
		rc = -2;
	prm_count(&v);
	pr_decision_free(d);
	prm_failure_free(&f, stack);
	return PRM_SCRIPT_RC(rc);
}

/* the optional mode argument: NULL when absent */
static int prm_mode_arg(struct sip_msg *msg, char *param, str *mode)
{
	if(param == NULL) {
		mode->s = NULL;
		mode->len = 0;
		return 0;
	}
	if(fixup_get_svalue(msg, (gparam_t *)param, mode) != 0) {
		LM_ERR("cannot get the mode argument\n");
		return -1;
	}
	return 0;
}

int w_push_lookup(struct sip_msg *msg, char *mode, char *p2)
{
	str m;

	if(prm_mode_arg(msg, mode, &m) < 0)
		return -2;
	return prm_push_lookup(msg, &m);
}

int w_push_redirect(struct sip_msg *msg, char *mode, char *p2)
{
	str m;

	if(prm_mode_arg(msg, mode, &m) < 0)
		return -2;
	return prm_push_redirect(msg, &m);
}

/* the KEMI wrappers (KSR.push_redirect.*, registered in mod_register()):
 * the same glue and return values as the script functions; KEMI hands the
 * mode over as a str */
int ki_push_lookup(struct sip_msg *msg)
{
	return prm_push_lookup(msg, NULL);
}

int ki_push_lookup_mode(struct sip_msg *msg, str *mode)
{
	return prm_push_lookup(msg, mode);
}

int ki_push_redirect(struct sip_msg *msg)
{
	return prm_push_redirect(msg, NULL);
}

int ki_push_redirect_mode(struct sip_msg *msg, str *mode)
{
	return prm_push_redirect(msg, mode);
}
