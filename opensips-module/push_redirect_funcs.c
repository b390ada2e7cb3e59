/*
 * push_redirect module for OpenSIPS - the script functions: read the
 * request (and in a failure route the transaction's branches and replies),
 * ask the core, write its decision back: the R-URI and destination set,
 * each branch with its own next hop, Path, socket, q and flags, as
 * registrar's lookup() builds them (lib/reg/lookup.c, push_branch()), and
 * with its own History-Info and Diversion headers (prm_branch_cb()).
 */

#include <string.h>

#include "dprint.h"
#include "dset.h"
#include "ut.h"
#include "data_lump.h"
#include "mem/mem.h"
#include "usr_avp.h"
#include "parser/parse_to.h"

#include "push_redirect_mod.h"

/* a pr_bytes as a str (borrowed) */
#define PRM_STR(_s, _b)                          \
	do {                                         \
		(_s).s = (char *)(_b).ptr;               \
		(_s).len = (_b).ptr ? (int)(_b).len : 0; \
	} while(0)

/* the request's part of a decision's input; ruri: the current R-URI in a
 * request route, the original one in a failure route; rows: room for
 * PR_MAX_HISTORY_INFO_ROWS + 1 History-Info rows (one more than the core
 * reads shows it there are too many) */
static int prm_read_request(struct sip_msg *msg, str *ruri, str *mode,
		pr_request *req, pr_bytes *rows)
{
	struct hdr_field *h;
	str *method = &msg->first_line.u.request.method;

	memset(req, 0, sizeof(*req));
	/* every header: History-Info rows may be anywhere */
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the request's headers\n");
		return -1;
	}
	PRM_BYTES(req->method, *method);
	req->method_bit = (uint32_t)msg->REQ_METHOD;
	PRM_BYTES(req->ruri, *ruri);
	if(msg->callid != NULL)
		PRM_BYTES(req->call_id, msg->callid->body);
	if(msg->to != NULL && parse_to_header(msg) == 0)
		PRM_BYTES(req->to_tag, get_to(msg)->tag_value);
	if(msg->event != NULL)
		PRM_BYTES(req->event, msg->event->body);
	if(msg->content_type != NULL)
		PRM_BYTES(req->content_type, msg->content_type->body);
	if(msg->privacy != NULL)
		PRM_BYTES(req->privacy, msg->privacy->body);
	if(mode != NULL)
		PRM_BYTES(req->mode, *mode);
	req->history_info = rows;
	for(h = msg->headers; h != NULL; h = h->next) {
		if(h->type != HDR_OTHER_T || h->name.len != 12
				|| strncasecmp(h->name.s, "History-Info", 12) != 0)
			continue;
		if(req->n_history_info <= PR_MAX_HISTORY_INFO_ROWS)
			PRM_BYTES(rows[req->n_history_info], h->body);
		req->n_history_info++;
	}
	return 0;
}

/* a branch's History-Info and Diversion values as its attributes
 * (set_msg_branch_attr(): 0 is the R-URI's branch, n the n-th appended):
 * tm hands them to the branch it makes (t->uac[i].battrs), where
 * prm_branch_cb() reads them */
static int prm_set_attrs(unsigned int idx, const pr_branch_out *b)
{
	int_str v;

	PRM_STR(v.s, b->history_info);
	if(v.s.len > 0
			&& set_msg_branch_attr(idx, prm_avp_hi, AVP_VAL_STR, v) < 0)
		return -1;
	PRM_STR(v.s, b->diversion);
	if(v.s.len > 0
			&& set_msg_branch_attr(idx, prm_avp_div, AVP_VAL_STR, v) < 0)
		return -1;
	return 0;
}

/* the first branch into the R-URI as lookup() sets it: URI, next hop
 * (first Path hop, else received: the core chose), Path, socket, q, and
 * the flags: ORed into branch 0's in a request route (as lookup()), branch
 * 0's own in a failure route (no branch inherits another target's) */
static int prm_set_ruri(struct sip_msg *msg, const pr_branch_out *b, int or)
{
	str uri, dst, path;

	PRM_STR(uri, b->uri);
	PRM_STR(dst, b->dst_uri);
	PRM_STR(path, b->path);
	if(set_ruri(msg, &uri) < 0
			|| (dst.len > 0 ? set_dst_uri(msg, &dst) < 0
							: (reset_dst_uri(msg), 0))
			|| (path.len > 0 ? set_path_vector(msg, &path) < 0
							 : (clear_path_vector(msg), 0)))
		return -1;
	msg->force_send_socket = (const struct socket_info *)b->socket;
	set_ruri_q(msg, (qvalue_t)b->q);
	setb0flags(msg, b->flags | (or ? getb0flags(msg) : 0));
	return 0;
}

/* another branch appended as lookup() appends one */
static int prm_append(const pr_branch_out *b)
{
	struct msg_branch br;

	memset(&br, 0, sizeof(br));
	PRM_STR(br.uri, b->uri);
	PRM_STR(br.dst_uri, b->dst_uri);
	PRM_STR(br.path, b->path);
	br.q = b->q;
	br.force_send_socket = (const struct socket_info *)b->socket;
	br.bflags = b->flags;
	return append_msg_branch(&br) < 0 ? -1 : 0;
}

/* a decision into OpenSIPS: the first branch into the R-URI, the others
 * appended, each with its attributes */
static int prm_apply(struct sip_msg *msg, const pr_decision_view *v, int or)
{
	const pr_branch_out *b;
	size_t i;

	for(i = 0; i < v->n_branches; i++) {
		b = &v->branches[i];
		if(b->uri.len == 0 || b->uri.len >= MAX_URI_SIZE
				|| (i == 0 ? prm_set_ruri(msg, b, or) : prm_append(b)) < 0
				|| prm_set_attrs(i == 0 ? 0 : get_dset_size(), b) < 0)
			return -1;
	}
	return v->n_branches == 0 ? -1 : 0;
}

/* "Name: value" as a header line of msg added before anchor at (pkg
 * memory the lump owns) */
static void prm_add_hdr(
		struct sip_msg *msg, struct lump *at, const char *name, str *val)
{
	int nlen = (int)strlen(name);
	int len = nlen + val->len + CRLF_LEN;
	char *buf = at != NULL ? pkg_malloc(len) : NULL;

	if(buf != NULL) {
		memcpy(buf, name, nlen);
		memcpy(buf + nlen, val->s, val->len);
		memcpy(buf + nlen + val->len, CRLF, CRLF_LEN);
		if(insert_new_lump_before(at, buf, len, 0) != NULL)
			return;
		pkg_free(buf);
	}
	LM_ERR("cannot add a %.*s header to a branch (Call-ID %.*s)\n",
			nlen - 2, name, msg->callid ? msg->callid->body.len : 0,
			msg->callid ? msg->callid->body.s : "");
}

/* the string value of attribute id in the list attrs, or NULL */
static str *prm_attr(struct usr_avp **attrs, int id, int_str *v)
{
	struct usr_avp **old = set_avp_list(attrs);
	struct usr_avp *a = search_first_avp(0, id, v, 0);

	set_avp_list(old);
	return (a != NULL && (a->flags & AVP_VAL_STR)) ? &v->s : NULL;
}

/* TMCB_REQUEST_FWDED, which tm runs in add_uac() once per new branch, in
 * every round, after the branch's attributes became its own
 * (t->uac[i].battrs) and while every new lump is flagged LUMPFLAG_BRANCH
 * (deleted again once the branch's buffer is built): the branch's
 * History-Info and Diversion values, as headers of that branch alone.
 * The param: push_lookup()'s branch_timeout (tm's fr_timeout, seconds),
 * for the transaction that did not exist yet */
static void prm_branch_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	struct usr_avp **attrs = &t->uac[prm_tmb.get_branch_index()].battrs;
	struct sip_msg *msg = ps->req;
	struct lump *end;
	int_str h, d;
	str *hi, *div;

	if(*ps->param != NULL)
		t->fr_timeout = (int)(long)*ps->param;
	hi = prm_attr(attrs, prm_avp_hi, &h);
	div = prm_attr(attrs, prm_avp_div, &d);
	if(hi == NULL && div == NULL)
		return;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the request to add its branch's headers\n");
		return;
	}
	end = anchor_lump(msg, msg->unparsed - msg->buf, 0);
	/* after the request's own History-Info rows */
	if(hi != NULL)
		prm_add_hdr(msg, end, "History-Info: ", hi);
	/* the most recent diversion first (RFC 5806) */
	if(div != NULL) {
		if(msg->diversion != NULL)
			end = anchor_lump(msg, msg->diversion->name.s - msg->buf, 0);
		prm_add_hdr(msg, end, "Diversion: ", div);
	}
}

/* prm_branch_cb() on the transaction, once, if it has something to do:
 * push_lookup()'s branch_timeout, or a branch with values (else nothing
 * is added to the transaction); in a failure route, t's list tells
 * whether it is there; in a request route tm keeps it for the transaction
 * t_relay() makes, on a list of this request (by its id) */
static int prm_hook(
		struct sip_msg *msg, const pr_decision_view *v, struct cell *t, int fr)
{
	static unsigned int msg_id, msg_set;
	struct tm_callback *cb;
	int need = (t == NULL && fr > 0);
	size_t i;

	for(i = 0; i < v->n_branches && !need; i++)
		need = v->branches[i].history_info.len > 0
			   || v->branches[i].diversion.len > 0;
	if(!need)
		return 0;
	if(t != NULL) {
		for(cb = t->tmcb_hl.first; cb != NULL; cb = cb->next)
			if(cb->callback == prm_branch_cb)
				return 0;
	} else if(msg_set && msg_id == msg->id) {
		return 0;
	}
	if(prm_tmb.register_tmcb(msg, t, TMCB_REQUEST_FWDED, prm_branch_cb,
			   t ? NULL : (void *)(long)fr, NULL)
			< 0)
		return -1;
	if(t == NULL) {
		msg_id = msg->id;
		msg_set = 1;
	}
	return 0;
}

/* the transaction's branches (t->uac has MAX_BRANCHES: they fit in br)
 * and the memo its previous round kept */
static void prm_read_failure(struct cell *t, pr_branch *br, pr_failure *f)
{
	struct sip_msg *rpl;
	int_str memo;
	int i;

	memset(f, 0, sizeof(*f));
	for(i = 0; i < t->nr_of_outgoings && i < MAX_BRANCHES; i++) {
		memset(&br[i], 0, sizeof(br[i]));
		PRM_BYTES(br[i].uri, t->uac[i].uri);
		br[i].status = t->uac[i].last_received > 0
							   ? (uint32_t)t->uac[i].last_received
							   : 0;
		rpl = t->uac[i].reply;
		if(rpl != NULL && rpl != FAKED_REPLY && rpl->buf != NULL
				&& rpl->len > 0) {
			br[i].reply.ptr = (const uint8_t *)rpl->buf;
			br[i].reply.len = (size_t)rpl->len;
		}
		br[i].current_round = (i >= t->first_branch);
	}
	f->branches = br;
	f->n_branches = (size_t)i;
	if(prm_attr(&t->user_avps, prm_avp_memo, &memo) != NULL)
		PRM_BYTES(f->memo, memo.s);
}

/* the decision's memo in place of the one kept before, as an AVP of the
 * request: tm moves a request's AVPs into the transaction t_relay() makes,
 * and a failure route works on the transaction's (shared memory: the next
 * round may run in another process) */
static int prm_keep_memo(const pr_decision_view *v)
{
	struct usr_avp *a = search_first_avp(0, prm_avp_memo, NULL, 0);
	int_str val;

	if(a != NULL)
		destroy_avp(a);
	PRM_STR(val.s, v->memo);
	return val.s.len > 0 ? add_avp(AVP_VAL_STR, prm_avp_memo, val) : 0;
}

/* one glue for both script functions: t is the failure route's
 * transaction, NULL in a request route */
static int prm_decide(struct sip_msg *msg, str *mode, struct cell *t)
{
	pr_engine *e = prm_engine_get();
	pr_bytes rows[PR_MAX_HISTORY_INFO_ROWS + 1];
	pr_branch br[MAX_BRANCHES];
	pr_request req;
	pr_failure f;
	pr_decision_view v;
	pr_decision *d = NULL;
	pr_status st;
	int rc, fr;

	/* a failure route reads the R-URI as the request arrived */
	if(e == NULL
			|| prm_read_request(msg,
					   t ? &msg->first_line.u.request.uri : GET_RURI(msg),
					   mode, &req, rows)
					   < 0)
		return -2;
	if(t != NULL) {
		prm_read_failure(t, br, &f);
		st = pr_push_redirect(e, &req, &f, &d, &v);
	} else {
		st = pr_push_lookup(e, &req, &d, &v);
	}
	if(st != PR_STATUS_OK) {
		LM_ERR("%s failed (Call-ID %.*s): %s\n",
				t ? "push_redirect" : "push_lookup", (int)req.call_id.len,
				(const char *)req.call_id.ptr, prm_status_str(st));
		return -2;
	}
	/* branch_timeout as the transaction's final-response timer (tm's is
	 * in seconds: rounded up); a transaction still to be made gets it from
	 * prm_branch_cb() */
	fr = (int)((pr_engine_branch_timeout_ms(e) + 999) / 1000);
	rc = v.script_rc;
	if(rc == 1 && t != NULL && fr > 0)
		t->fr_timeout = fr;
	if(rc == 1
			&& (prm_apply(msg, &v, t == NULL) < 0 || prm_keep_memo(&v) < 0
					|| prm_hook(msg, &v, t, fr) < 0)) {
		LM_ERR("cannot apply the decision (Call-ID %.*s)\n",
				(int)req.call_id.len, (const char *)req.call_id.ptr);
		rc = -2;
	}
	prm_count(v.counters);
	pr_decision_free(d);
	/* a script function never returns 0 (it would stop the script) */
	return rc == 0 ? -1 : rc;
}

int w_push_lookup(struct sip_msg *msg, str *mode)
{
	return prm_decide(msg, mode, NULL);
}

int w_push_redirect(struct sip_msg *msg, str *mode)
{
	struct cell *t = prm_tmb.t_gett();

	if(t == NULL || t == T_UNDEFINED) {
		LM_ERR("no transaction: push_redirect() belongs in a failure"
			   " route\n");
		return -2;
	}
	return prm_decide(msg, mode, t);
}
