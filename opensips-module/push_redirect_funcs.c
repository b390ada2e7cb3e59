/*
 * push_redirect module for OpenSIPS - the script functions: read the
 * request (and in a failure route the transaction's branches and replies),
 * ask the core, write its decision back: the R-URI and destination set,
 * each branch with its own next hop, Path, socket, q and flags, as
 * registrar's lookup() builds them (lib/reg/lookup.c, push_branch()).
 */

#include <string.h>

#include "dprint.h"
#include "dset.h"
#include "ut.h"
#include "mem/shm_mem.h"
#include "parser/parse_to.h"

#include "push_redirect_mod.h"

/* a pr_bytes as a str (borrowed) */
#define PRM_STR(_s, _b)                          \
	do {                                         \
		(_s).s = (char *)(_b).ptr;               \
		(_s).len = (_b).ptr ? (int)(_b).len : 0; \
	} while(0)

/* the request's part of a decision's input; ruri: the current R-URI in a
 * request route, the original one in a failure route */
static int prm_read_request(
		struct sip_msg *msg, str *ruri, str *mode, pr_request *req)
{
	hdr_flags_t want;
	str *method = &msg->first_line.u.request.method;

	memset(req, 0, sizeof(*req));
	/* only the header the core makes the service key of is parsed */
	want = HDR_TO_F | HDR_CALLID_F;
	want |= pr_service_by_event((const uint8_t *)method->s, method->len)
					? HDR_EVENT_F
					: HDR_CONTENTTYPE_F;
	if(parse_headers(msg, want, 0) < 0) {
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
	if(mode != NULL)
		PRM_BYTES(req->mode, *mode);
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

/* TMCB_REQUEST_BUILT of a transaction push_lookup() set up: runs once it
 * exists, before each branch's timer starts */
static void prm_fr_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	t->fr_timeout = (int)(long)*ps->param;
}

/* a decision into OpenSIPS: the first branch into the R-URI, the others
 * appended, and branch_timeout as the transaction's final-response timer
 * (tm's is in seconds: rounded up); t: the failure route's transaction,
 * NULL in a request route, where it is still to be made */
static int prm_apply(struct sip_msg *msg, const pr_decision_view *v,
		struct cell *t, pr_engine *e)
{
	int fr = (int)((pr_engine_branch_timeout_ms(e) + 999) / 1000);
	size_t i;

	for(i = 0; i < v->n_branches; i++)
		if(v->branches[i].uri.len == 0
				|| v->branches[i].uri.len >= MAX_URI_SIZE
				|| (i == 0 ? prm_set_ruri(msg, &v->branches[0], t == NULL)
						   : prm_append(&v->branches[i]))
						   < 0)
			return -1;
	if(v->n_branches == 0 || fr == 0)
		return v->n_branches == 0 ? -1 : 0;
	if(t != NULL)
		t->fr_timeout = fr;
	else if(prm_tmb.register_tmcb(msg, 0, TMCB_REQUEST_BUILT, prm_fr_cb,
					(void *)(long)fr, 0)
			< 0)
		return -1;
	return 0;
}

/* the transaction's branches (t->uac has MAX_BRANCHES: they fit in br)
 * and the memo its previous round kept */
static void prm_read_failure(struct cell *t, pr_branch *br, pr_failure *f)
{
	struct sip_msg *rpl;
	str *memo;
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
	memo = prm_tmb.t_ctx_get_str(t, prm_memo_pos);
	if(memo != NULL)
		PRM_BYTES(f->memo, *memo);
}

/* the decision's memo in place of the one the transaction kept (shared
 * memory: the next round may run in another process) */
static int prm_keep_memo(struct cell *t, const pr_decision_view *v)
{
	str old, new = {NULL, 0};

	if(v->memo.len > 0) {
		new.s = shm_malloc(v->memo.len);
		if(new.s == NULL) {
			LM_ERR("no shared memory for the transaction's memo\n");
			return -1;
		}
		memcpy(new.s, v->memo.ptr, v->memo.len);
		new.len = (int)v->memo.len;
	}
	old = *prm_tmb.t_ctx_get_str(t, prm_memo_pos);
	prm_tmb.t_ctx_put_str(t, prm_memo_pos, &new);
	if(old.s != NULL)
		shm_free(old.s);
	return 0;
}

/* one glue for both script functions: t is the failure route's
 * transaction, NULL in a request route */
static int prm_decide(struct sip_msg *msg, str *mode, struct cell *t)
{
	pr_engine *e = prm_engine_get();
	pr_branch br[MAX_BRANCHES];
	pr_request req;
	pr_failure f;
	pr_decision_view v;
	pr_decision *d = NULL;
	pr_status st;
	int rc;

	/* a failure route reads the R-URI as the request arrived */
	if(e == NULL
			|| prm_read_request(msg,
					   t ? &msg->first_line.u.request.uri : GET_RURI(msg),
					   mode, &req)
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
	rc = v.script_rc;
	if(rc == 1
			&& (prm_apply(msg, &v, t, e) < 0
					|| (t != NULL && prm_keep_memo(t, &v) < 0))) {
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
