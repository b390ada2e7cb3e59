/*
 * push_redirect module - between Kamailio and the Rust core
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * What the core asks of Kamailio (the contacts usrloc holds for an AOR,
 * whether a host is this proxy, where its log lines go), and what the
 * glue reads out of Kamailio (the request, the transaction's branches and
 * memo) and writes back (R-URI and destination set, each branch with its
 * own destination, Path, socket and instance; the fr timeout; the memo;
 * the statistics).  Nothing here decides: no policy in C.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/dprint.h"
#include "core/dset.h"
#include "core/forward.h"
#include "core/mem/mem.h"
#include "core/parser/parse_to.h"
#include "core/ut.h"
#include "core/xavp.h"

#include "push_redirect_host.h"

/* a Kamailio str as a pr_bytes (borrowed, not copied) */
#define PRM_BYTES(_b, _s)                                           \
	do {                                                            \
		(_b).ptr = (const uint8_t *)(_s).s;                         \
		(_b).len = ((_s).s && (_s).len > 0) ? (size_t)(_s).len : 0; \
	} while(0)

/* a pr_bytes as a Kamailio str */
#define PRM_STR(_s, _b)                                         \
	do {                                                        \
		(_s).s = (char *)(_b).ptr;                              \
		(_s).len = (_b).ptr ? (int)(_b).len : 0;                \
	} while(0)

/* pr_lookup_fn: the valid contacts of an AOR's usrloc record, under the
 * record's lock; the core made the key (registrar's extract_aor()) */
int32_t prm_lookup(void *userdata, const pr_aor *aor, pr_contacts *out)
{
	str key;
	urecord_t *r;
	ucontact_t *c;
	pr_contact pc;
	pr_status st;
	time_t now;
	int res;
	int ret;

	if(prm_udomain == NULL) {
		LM_ERR("usrloc table '%s' not registered\n", prm_location_table.s);
		return -1;
	}
	key.s = (char *)aor->key.ptr;
	key.len = (int)(prm_ul.use_domain ? aor->key.len : aor->user_len);

	now = time(NULL);
	ret = 0;
	prm_ul.lock_udomain(prm_udomain, &key);
	res = prm_ul.get_urecord(prm_udomain, &key, &r);
	if(res != 0) {
		/* 1: no record, i.e. no contacts; <0: error */
		prm_ul.unlock_udomain(prm_udomain, &key);
		if(res < 0) {
			LM_ERR("usrloc lookup of AOR [%.*s] failed\n", key.len, key.s);
			return -1;
		}
		return 0;
	}
	for(c = r->contacts; c != NULL; c = c->next) {
		if(!VALID_CONTACT(c, now))
			continue;
		memset(&pc, 0, sizeof(pc));
		PRM_BYTES(pc.uri, c->c);
		PRM_BYTES(pc.received, c->received);
		PRM_BYTES(pc.path, c->path);
		PRM_BYTES(pc.instance, c->instance);
		pc.socket = (const void *)c->sock;
		pc.q = (int32_t)c->q;
		pc.last_modified = (int64_t)c->last_modified;
		pc.flags = c->cflags;
		pc.methods = c->methods;
		pc.reg_id = c->reg_id;
		PRM_BYTES(pc.ruid, c->ruid);
		PRM_BYTES(pc.user_agent, c->user_agent);
		pc.conn_id = c->tcpconn_id;
		st = pr_contacts_add(out, &pc);
		if(st != PR_STATUS_OK) {
			LM_ERR("cannot hand contact [%.*s] of AOR [%.*s] to the core:"
				   " %s\n",
					c->c.len, c->c.s, key.len, key.s, prm_status_str(st));
			ret = -1;
			break;
		}
	}
	prm_ul.release_urecord(r);
	prm_ul.unlock_udomain(prm_udomain, &key);
	return ret;
}

/* pr_is_self_fn: Kamailio's "myself" (listen addresses and aliases) */
bool prm_is_self(
		void *userdata, const uint8_t *host, size_t host_len, uint16_t port)
{
	str h;

	if(host == NULL || host_len == 0)
		return false;
	h.s = (char *)host;
	h.len = (int)host_len;
	return check_self(&h, port, 0) == 1;
}

/* pr_log_fn: the core's log lines into Kamailio's log */
void prm_log_bridge(
		void *userdata, pr_log_level level, const uint8_t *msg, size_t len)
{
	int n;

	n = (len > 4096) ? 4096 : (int)len;
	if(msg == NULL)
		n = 0;
	switch(level) {
		case PR_LOG_LEVEL_ERROR:
			LM_ERR("%.*s\n", n, (const char *)msg);
			break;
		case PR_LOG_LEVEL_WARN:
			LM_WARN("%.*s\n", n, (const char *)msg);
			break;
		case PR_LOG_LEVEL_INFO:
			LM_INFO("%.*s\n", n, (const char *)msg);
			break;
		default:
			LM_DBG("%.*s\n", n, (const char *)msg);
			break;
	}
}

int prm_read_request(
		struct sip_msg *msg, str *ruri, str *mode, pr_request *req)
{
	hdr_flags_t want;

	memset(req, 0, sizeof(*req));
	if(msg->first_line.type != SIP_REQUEST) {
		LM_ERR("not a request\n");
		return -1;
	}
	/* only the header the core makes the service key of (its rule) is
	 * looked for: the rest of the headers are not parsed for it */
	want = HDR_TO_F | HDR_CALLID_F;
	want |= pr_service_by_event(
					(const uint8_t *)msg->first_line.u.request.method.s,
					(size_t)msg->first_line.u.request.method.len)
					? HDR_EVENT_F
					: HDR_CONTENTTYPE_F;
	if(parse_headers(msg, want, 0) < 0) {
		LM_ERR("cannot parse the request's headers\n");
		return -1;
	}
	PRM_BYTES(req->method, msg->first_line.u.request.method);
	req->method_bit = (uint32_t)msg->REQ_METHOD;
	PRM_BYTES(req->ruri, *ruri);
	if(msg->callid != NULL)
		PRM_BYTES(req->call_id, msg->callid->body);
	if(msg->to != NULL && parse_to_header(msg) == 0 && get_to(msg) != NULL)
		PRM_BYTES(req->to_tag, get_to(msg)->tag_value);
	if(msg->event != NULL)
		PRM_BYTES(req->event, msg->event->body);
	if(msg->content_type != NULL)
		PRM_BYTES(req->content_type, msg->content_type->body);
	if(mode != NULL)
		PRM_BYTES(req->mode, *mode);
	return 0;
}

/*
 * The core's memo of this transaction (the Contacts of earlier 3xx replies
 * still to try, and how many redirects were followed): tm drops earlier
 * rounds' replies, so the core hands this back to be kept with the
 * transaction.  It is empty when the next round can derive it from the
 * transaction's branches (a followed 302, a failover): nothing is kept.
 * In a failure route the XAVP list is the transaction's own (shared
 * memory), so the next round sees it whichever process runs it.
 */
static str prm_memo_name = str_init("push_redirect_memo");

int prm_read_failure(
		struct cell *t, pr_branch *stack, pr_failure *f, int *had_memo)
{
	pr_branch *br;
	struct sip_msg *rpl;
	sr_xavp_t *x;
	int first;
	int i;

	memset(f, 0, sizeof(*f));
	if(t->nr_of_outgoings <= 0)
		return -1;
	if(t->nr_of_outgoings <= PRM_BRANCHES_ON_STACK) {
		br = stack;
	} else {
		br = (pr_branch *)pkg_malloc(
				t->nr_of_outgoings * sizeof(pr_branch));
		if(br == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
	}
	memset(br, 0, t->nr_of_outgoings * sizeof(pr_branch));

	/* the current round starts at the last branch t_relay() marked as
	 * the first of its set (5.6 has no t->first_branch) */
	for(first = t->nr_of_outgoings - 1; first > 0; first--)
		if(t->uac[first].flags & TM_UAC_FLAG_FB)
			break;

	for(i = 0; i < t->nr_of_outgoings; i++) {
		PRM_BYTES(br[i].uri, t->uac[i].uri);
		br[i].status = (t->uac[i].last_received > 0)
							   ? (uint32_t)t->uac[i].last_received
							   : 0;
		/* a timed-out branch gets a faked 408; be explicit anyway */
		if(br[i].status == 0 && (t->uac[i].request.flags & F_RB_TIMEOUT))
			br[i].status = 408;
		rpl = t->uac[i].reply;
		if(rpl != NULL && rpl != FAKED_REPLY && rpl->buf != NULL
				&& rpl->len > 0) {
			br[i].reply.ptr = (const uint8_t *)rpl->buf;
			br[i].reply.len = (size_t)rpl->len;
		}
		br[i].current_round = (i >= first);
	}
	f->branches = br;
	f->n_branches = (size_t)t->nr_of_outgoings;
	x = xavp_get(&prm_memo_name, NULL);
	*had_memo = (x != NULL);
	if(x != NULL && x->val.type == SR_XTYPE_STR)
		PRM_BYTES(f->memo, x->val.v.s);
	return 0;
}

void prm_failure_free(pr_failure *f, pr_branch *stack)
{
	if(f->branches != NULL && f->branches != stack)
		pkg_free((void *)f->branches);
	f->branches = NULL;
	f->n_branches = 0;
}

int prm_keep_memo(const pr_decision_view *v, int had_memo, str *callid)
{
	sr_xval_t val;

	if(had_memo)
		xavp_rm_by_name(&prm_memo_name, 1, NULL);
	/* nothing to keep: the next round derives it from the transaction */
	if(v->memo.len == 0)
		return 0;
	memset(&val, 0, sizeof(val));
	val.type = SR_XTYPE_STR;
	PRM_STR(val.v.s, v->memo);
	if(xavp_add_value(&prm_memo_name, &val, NULL) == NULL) {
		LM_ERR("cannot keep the memo with the transaction (Call-ID %.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	return 0;
}

/* the engine's branch timeout as the fr timeout of the transaction's
 * (new) branches; in a request route before t_relay() tm keeps it for the
 * transaction it is about to create; t: the transaction in a failure
 * route (NULL in a request route), left alone when it has the timeout
 * already (push_lookup() gave it; tm's change_fr() walks every branch) */
static int prm_set_branch_timeout(
		struct sip_msg *msg, struct cell *t, str *callid)
{
	uint32_t ms;

	ms = pr_engine_branch_timeout_ms(prm_engine);
	if(ms == 0)
		return 0;
	if(t != NULL && t != T_UNDEFINED
			&& t->fr_timeout == MS_TO_TICKS((ticks_t)ms))
		return 0;
	if(prm_tmb.set_fr(msg, 0, ms) < 0) {
		LM_ERR("cannot set the branch timeout %u ms (Call-ID %.*s)\n", ms,
				callid->len, ZSW(callid->s));
		return -1;
	}
	return 0;
}

/* a branch appended to the destination set as registrar's lookup()
 * appends one (ksr_push_branch()): its own destination, Route set (Path),
 * q, branch flags, socket, instance, reg-id, ruid, user agent and TCP
 * connection; the core decided each of them */
static int prm_append(struct sip_msg *msg, const pr_branch_out *b)
{
	str uri, dst, path, inst, ruid, ua;
	branch_t *br;

	PRM_STR(uri, b->uri);
	PRM_STR(dst, b->dst_uri);
	PRM_STR(path, b->path);
	PRM_STR(inst, b->instance);
	PRM_STR(ruid, b->ruid);
	PRM_STR(ua, b->user_agent);
	br = ksr_push_branch(msg, &uri, &dst, path.len > 0 ? &path : NULL,
			(qvalue_t)b->q, (flag_t)b->flags,
			(struct socket_info *)b->socket, inst.len > 0 ? &inst : NULL,
			b->reg_id, &ruid, &ua);
	if(br == NULL) {
		LM_ERR("cannot append branch [%.*s]\n", uri.len, uri.s);
		return -1;
	}
	br->otcpid = b->conn_id;
	return 0;
}

/* a branch into the R-URI as registrar's lookup() sets it: its own
 * destination, Route set (Path), socket, q, instance, reg-id, ruid, user
 * agent, TCP connection, and its flags ORed into branch 0's */
static int prm_set_ruri(struct sip_msg *msg, const pr_branch_out *b)
{
	str uri, dst, path, inst, ruid, ua;
	flag_t old_bflags;

	PRM_STR(uri, b->uri);
	PRM_STR(dst, b->dst_uri);
	PRM_STR(path, b->path);
	PRM_STR(inst, b->instance);
	PRM_STR(ruid, b->ruid);
	PRM_STR(ua, b->user_agent);
	if(rewrite_uri(msg, &uri) < 0) {
		LM_ERR("cannot set the R-URI [%.*s]\n", uri.len, uri.s);
		return -1;
	}
	if(dst.len > 0) {
		if(set_dst_uri(msg, &dst) < 0) {
			LM_ERR("cannot set the destination URI\n");
			return -1;
		}
	} else {
		reset_dst_uri(msg);
	}
	if(path.len > 0) {
		if(set_path_vector(msg, &path) < 0) {
			LM_ERR("cannot set the Path vector\n");
			return -1;
		}
	} else {
		reset_path_vector(msg);
	}
	if(inst.len > 0) {
		if(set_instance(msg, &inst) < 0) {
			LM_ERR("cannot set the instance\n");
			return -1;
		}
	} else {
		reset_instance(msg);
	}
	msg->reg_id = b->reg_id;
	if(ruid.len > 0) {
		if(set_ruid(msg, &ruid) < 0) {
			LM_ERR("cannot set the ruid\n");
			return -1;
		}
	} else {
		reset_ruid(msg);
	}
	if(ua.len > 0) {
		if(set_ua(msg, &ua) < 0) {
			LM_ERR("cannot set the location user agent\n");
			return -1;
		}
	} else {
		reset_ua(msg);
	}
	msg->otcpid = b->conn_id;
	old_bflags = 0;
	getbflagsval(0, &old_bflags);
	setbflagsval(0, old_bflags | (flag_t)b->flags);
	/* a pointer usrloc gave the core, handed back untouched */
	set_force_socket(msg, (struct socket_info *)b->socket);
	set_ruri_q((qvalue_t)b->q);
	return 0;
}

int prm_apply(struct sip_msg *msg, const pr_decision_view *v,
		int first_to_ruri, struct cell *t, str *callid)
{
	size_t i;

	if(v->n_branches == 0 || v->branches == NULL) {
		LM_ERR("the core decided to forward but gave no branch (Call-ID"
			   " %.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	for(i = 0; i < v->n_branches; i++) {
		if(v->branches[i].uri.len == 0
				|| v->branches[i].uri.len >= MAX_URI_SIZE) {
			LM_ERR("branch %zu of the decision has no usable URI\n", i);
			return -1;
		}
		if(i == 0 && first_to_ruri) {
			if(prm_set_ruri(msg, &v->branches[i]) < 0)
				return -1;
		} else if(prm_append(msg, &v->branches[i]) < 0) {
			return -1;
		}
	}
	return prm_set_branch_timeout(msg, t, callid);
}

void prm_count(const pr_decision_view *v)
{
	int i;

	for(i = 0; i < PR_STAT_COUNT; i++)
		if(v->counters[i] != 0 && prm_stats[i] != NULL)
			update_stat(prm_stats[i], v->counters[i]);
}
