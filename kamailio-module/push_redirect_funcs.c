/*
 * push_redirect module - script functions and the callbacks of the core
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * push_lookup() and push_redirect() read the request (and in a failure
 * route the transaction's branches) out of Kamailio, ask the Rust core
 * for a decision and write it back: R-URI and destination set, each
 * branch with its own destination, Path, socket and instance, and the
 * branches' fr timeout.  Nothing here decides: no policy in C.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/dprint.h"
#include "core/dset.h"
#include "core/forward.h"
#include "core/globals.h"
#include "core/mod_fix.h"
#include "core/parser/parse_to.h"
#include "core/parser/parse_uri.h"
#include "core/route.h"
#include "core/strutils.h"
#include "core/ut.h"
#include "core/xavp.h"

#include "push_redirect_funcs.h"

struct tm_binds prm_tmb;
usrloc_api_t prm_ul;
stat_var *prm_st_redirects_followed = NULL;
stat_var *prm_st_failovers = NULL;
stat_var *prm_st_forwardings_learned = NULL;
stat_var *prm_st_forwardings_applied = NULL;
stat_var *prm_st_targets_refused = NULL;
stat_var *prm_st_loops_prevented = NULL;
stat_var *prm_st_contacts_dropped = NULL;
str prm_location_table = STR_NULL;
udomain_t *prm_udomain = NULL;
pr_config *prm_cfg = NULL;

/* this process' engine; prm_engine_pid tells an engine created here from
 * one inherited through fork() (never freed nor used in the child) */
static pr_engine *prm_engine = NULL;
static pid_t prm_engine_pid = 0;

/* the usrloc key of an AOR: user, or user@host with usrloc's use_domain */
#define PRM_AOR_MAX 256

/* a Kamailio str as a pr_bytes (borrowed, not copied) */
#define PRM_BYTES(_b, _s)                                           \
	do {                                                            \
		(_b).ptr = (const uint8_t *)(_s).s;                         \
		(_b).len = ((_s).s && (_s).len > 0) ? (size_t)(_s).len : 0; \
	} while(0)

const char *prm_status_str(pr_status st)
{
	static char buf[128];
	size_t n;

	n = 0;
	if(pr_status_text(st, (uint8_t *)buf, sizeof(buf) - 1, &n)
					!= PR_STATUS_OK
			|| n >= sizeof(buf)) {
		snprintf(buf, sizeof(buf), "status %u", (unsigned)st);
		return buf;
	}
	buf[n] = '\0';
	return buf;
}

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

/*
 * The user and host of an AOR the core wrote as "sip:user@host" or
 * "sips:user@host" (its canonical form): found by a scan instead of a full
 * parse_uri(). -1 when the string has any other shape (a password, a port,
 * parameters, an IPv6 host, no user...): the caller parses it then.
 */
static int prm_aor_split(const char *s, size_t len, str *user, str *host)
{
	size_t start;
	size_t at;
	size_t i;

	if(len > 4 && strncasecmp(s, "sip:", 4) == 0)
		start = 4;
	else if(len > 5 && strncasecmp(s, "sips:", 5) == 0)
		start = 5;
	else
		return -1;
	at = 0;
	for(i = start; i < len; i++) {
		switch(s[i]) {
			case '@':
				if(at != 0)
					return -1;
				at = i;
				break;
			case ':':
			case ';':
			case '?':
			case '[':
			case '<':
			case '>':
			case ' ':
				return -1;
			default:
				break;
		}
	}
	if(at <= start || at + 1 >= len)
		return -1;
	user->s = (char *)s + start;
	user->len = (int)(at - start);
	host->s = (char *)s + at + 1;
	host->len = (int)(len - at - 1);
	return 0;
}

/*
 * The usrloc key of an AOR, as registrar's extract_aor() builds it with
 * its defaults (no realm_pref, case_sensitive 0): the unescaped user, plus
 * "@host" with use_domain, lower-cased.  The core may hand the AOR as a
 * URI ("sip:u1@example.com") or as "user@host".
 */
static int prm_aor_key(const uint8_t *aor, size_t len, char *buf, str *key)
{
	char ubuf[MAX_URI_SIZE];
	sip_uri_t puri;
	str u;
	str user;
	str uuser;
	str host;

	if(len == 0 || len >= MAX_URI_SIZE - 5)
		return -1;
	if(prm_aor_split((const char *)aor, len, &uuser, &host) < 0) {
		if((len > 4 && strncasecmp((const char *)aor, "sip:", 4) == 0)
				|| (len > 5 && strncasecmp((const char *)aor, "sips:", 5) == 0)
				|| (len > 4
						&& strncasecmp((const char *)aor, "tel:", 4) == 0)) {
			u.s = (char *)aor;
			u.len = (int)len;
		} else {
			memcpy(ubuf, "sip:", 4);
			memcpy(ubuf + 4, aor, len);
			u.s = ubuf;
			u.len = (int)len + 4;
		}
		if(parse_uri(u.s, u.len, &puri) < 0)
			return -1;
		uuser = puri.user;
		host = puri.host;
	}
	if(uuser.len + host.len + 1 >= PRM_AOR_MAX)
		return -1;

	user.s = buf;
	user.len = 0;
	if(uuser.len > 0 && memchr(uuser.s, '%', uuser.len) == NULL) {
		/* nothing escaped (the usual case): a plain copy */
		memcpy(buf, uuser.s, uuser.len);
		user.len = uuser.len;
	} else if(uuser.len > 0 && un_escape(&uuser, &user) < 0) {
		return -1;
	}
	key->s = buf;
	key->len = user.len;
	if(prm_ul.use_domain) {
		if(key->len > 0)
			buf[key->len++] = '@';
		memcpy(buf + key->len, host.s, host.len);
		key->len += host.len;
	}
	strlower(key);
	return 0;
}

/* pr_lookup_fn: the valid contacts of an AOR's usrloc record */
static int32_t prm_lookup(void *userdata, const uint8_t *aor, size_t aor_len,
		pr_contact_sink *sink)
{
	char kbuf[PRM_AOR_MAX];
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
	if(prm_aor_key(aor, aor_len, kbuf, &key) < 0) {
		LM_WARN("cannot make a usrloc key of AOR [%.*s]\n", (int)aor_len,
				(const char *)aor);
		/* no record can match it: no contacts */
		return 0;
	}

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
		st = pr_contact_sink_add(sink, &pc);
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
static bool prm_is_self(
		void *userdata, const uint8_t *host, size_t host_len, uint16_t port)
{
	str h;

	if(host == NULL || host_len == 0)
		return false;
	h.s = (char *)host;
	h.len = (int)host_len;
	return check_self(&h, port, 0) == 1;
}

int prm_engine_init(void)
{
	pr_status st;
	pid_t pid;

	pid = getpid();
	if(prm_engine != NULL && prm_engine_pid == pid)
		return 0;
	/* an engine inherited from the parent is left alone: its store
	 * handle belongs to the parent */
	prm_engine = NULL;
	st = pr_engine_new(prm_cfg, prm_lookup, prm_is_self, NULL, &prm_engine);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot start the push_redirect engine: %s\n",
				prm_status_str(st));
		prm_engine = NULL;
		return -1;
	}
	prm_engine_pid = pid;
	/* debug lines are formatted by the core only when this process logs
	 * them (the level at start-up; LM_* filters again at run time) */
	pr_set_logger(prm_log_bridge, NULL,
			is_printable(L_DBG) ? PR_LOG_LEVEL_DEBUG : PR_LOG_LEVEL_INFO);
	/* this process' own handle on the forwarding store */
	st = pr_engine_open_store(prm_engine);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot open the forwarding store: %s\n", prm_status_str(st));
		return -1;
	}
	/* the core caps its branch sets by Kamailio's own limit (core
	 * parameter max_branches) */
	st = pr_engine_set_branch_limit(prm_engine, sr_dst_max_branches);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot give the engine the branch limit %u: %s\n",
				sr_dst_max_branches, prm_status_str(st));
		return -1;
	}
	return 0;
}

/* pthread_atfork() child handler: a process forked after this one made its
 * engine starts without one (the engine and its store handle stay the
 * parent's), so the script functions never use an inherited engine and
 * need no PID check per request */
static void prm_engine_forget(void)
{
	prm_engine = NULL;
	prm_engine_pid = 0;
}

int prm_engine_fork_guard(void)
{
	if(pthread_atfork(NULL, NULL, prm_engine_forget) != 0) {
		LM_ERR("cannot register the fork handler\n");
		return -1;
	}
	return 0;
}

pr_engine *prm_engine_get(void)
{
	return (prm_engine != NULL && prm_engine_pid == getpid()) ? prm_engine
															  : NULL;
}

void prm_engine_destroy(void)
{
	pr_engine *e;

	/* detached before it is freed: a second call (a signal during the
	 * first, another exit path) finds nothing; an engine inherited from
	 * the parent through fork() is not this process' to free */
	e = prm_engine;
	prm_engine = NULL;
	if(e != NULL && prm_engine_pid == getpid())
		pr_engine_free(e);
	prm_engine_pid = 0;
}

/* the optional mode argument: NULL/0 when absent */
static int prm_get_mode(struct sip_msg *msg, char *mode, str *m)
{
	m->s = NULL;
	m->len = 0;
	if(mode == NULL)
		return 0;
	if(fixup_get_svalue(msg, (gparam_t *)mode, m) != 0) {
		LM_ERR("cannot get the mode argument\n");
		return -1;
	}
	return 0;
}

/* the request's part of a decision's input; ruri: the current R-URI in a
 * request route, the original one ($ou) in a failure route */
static int prm_fill_request(struct sip_msg *msg, str *ruri, pr_request *req)
{
	memset(req, 0, sizeof(*req));
	if(msg->first_line.type != SIP_REQUEST) {
		LM_ERR("not a request\n");
		return -1;
	}
	if(parse_headers(msg,
			   HDR_TO_F | HDR_CALLID_F | HDR_CONTENTTYPE_F | HDR_EVENT_F, 0)
			< 0) {
		LM_ERR("cannot parse the request's headers\n");
		return -1;
	}
	PRM_BYTES(req->method, msg->first_line.u.request.method);
	PRM_BYTES(req->ruri, *ruri);
	if(msg->callid != NULL)
		PRM_BYTES(req->call_id, msg->callid->body);
	if(msg->to != NULL && parse_to_header(msg) == 0 && get_to(msg) != NULL)
		PRM_BYTES(req->to_tag, get_to(msg)->tag_value);
	if(msg->event != NULL)
		PRM_BYTES(req->event, msg->event->body);
	if(msg->content_type != NULL)
		PRM_BYTES(req->content_type, msg->content_type->body);
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

/* one decided branch, as str fields for Kamailio */
typedef struct prm_branch {
	str uri;
	str dst_uri;
	str path;
	str instance;
	struct socket_info *sock;
	qvalue_t q;
} prm_branch_t;

static int prm_get_branch(pr_decision *d, size_t i, prm_branch_t *b)
{
	pr_branch_out o;
	pr_status st;

	memset(&o, 0, sizeof(o));
	st = pr_decision_branch(d, i, &o);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot read branch %zu of the decision: %s\n", i,
				prm_status_str(st));
		return -1;
	}
	if(o.uri.ptr == NULL || o.uri.len == 0 || o.uri.len >= MAX_URI_SIZE) {
		LM_ERR("branch %zu of the decision has no usable URI\n", i);
		return -1;
	}
	b->uri.s = (char *)o.uri.ptr;
	b->uri.len = (int)o.uri.len;
	b->dst_uri.s = (char *)o.dst_uri.ptr;
	b->dst_uri.len = o.dst_uri.ptr ? (int)o.dst_uri.len : 0;
	b->path.s = (char *)o.path.ptr;
	b->path.len = o.path.ptr ? (int)o.path.len : 0;
	b->instance.s = (char *)o.instance.ptr;
	b->instance.len = o.instance.ptr ? (int)o.instance.len : 0;
	/* a pointer usrloc gave to the core, handed back untouched */
	b->sock = (struct socket_info *)o.socket;
	b->q = (qvalue_t)o.q;
	return 0;
}

static int prm_append(struct sip_msg *msg, prm_branch_t *b)
{
	if(append_branch(msg, &b->uri, &b->dst_uri, &b->path, b->q, 0, b->sock,
			   &b->instance, 0, NULL, NULL)
			< 0) {
		LM_ERR("cannot append branch [%.*s]\n", b->uri.len, b->uri.s);
		return -1;
	}
	return 0;
}

/* branch 0 into the R-URI with its own destination, Path, socket and q */
static int prm_set_ruri(struct sip_msg *msg, prm_branch_t *b)
{
	if(rewrite_uri(msg, &b->uri) < 0) {
		LM_ERR("cannot set the R-URI [%.*s]\n", b->uri.len, b->uri.s);
		return -1;
	}
	if(b->dst_uri.len > 0) {
		if(set_dst_uri(msg, &b->dst_uri) < 0) {
			LM_ERR("cannot set the destination URI\n");
			return -1;
		}
	} else {
		reset_dst_uri(msg);
	}
	if(b->path.len > 0) {
		if(set_path_vector(msg, &b->path) < 0) {
			LM_ERR("cannot set the Path vector\n");
			return -1;
		}
	} else {
		reset_path_vector(msg);
	}
	if(b->instance.len > 0) {
		if(set_instance(msg, &b->instance) < 0) {
			LM_ERR("cannot set the instance\n");
			return -1;
		}
	} else {
		reset_instance(msg);
	}
	set_force_socket(msg, b->sock);
	set_ruri_q(b->q);
	return 0;
}

/* write a decision into Kamailio; first_to_ruri: branch 0 becomes the
 * R-URI (request route), else every branch is appended (failure route,
 * transaction t) */
static int prm_apply(struct sip_msg *msg, pr_decision *d, int first_to_ruri,
		struct cell *t, str *callid)
{
	prm_branch_t b;
	size_t n;
	size_t i;

	n = pr_decision_branch_count(d);
	if(n == 0) {
		LM_ERR("the core decided to forward but gave no branch (Call-ID"
			   " %.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	for(i = 0; i < n; i++) {
		memset(&b, 0, sizeof(b));
		if(prm_get_branch(d, i, &b) < 0)
			return -1;
		if(i == 0 && first_to_ruri) {
			if(prm_set_ruri(msg, &b) < 0)
				return -1;
		} else {
			if(prm_append(msg, &b) < 0)
				return -1;
		}
	}
	return prm_set_branch_timeout(msg, t, callid);
}

/* what every decision adds to the statistics, and its store action */
static void prm_account(pr_decision *d, str *callid)
{
	pr_counters c;

	memset(&c, 0, sizeof(c));
	if(pr_decision_counters(d, &c) == PR_STATUS_OK) {
		if_update_stat(c.redirects_followed, prm_st_redirects_followed,
				c.redirects_followed);
		if_update_stat(c.failovers, prm_st_failovers, c.failovers);
		if_update_stat(c.forwardings_learned, prm_st_forwardings_learned,
				c.forwardings_learned);
		if_update_stat(c.forwardings_applied, prm_st_forwardings_applied,
				c.forwardings_applied);
		if_update_stat(c.targets_refused, prm_st_targets_refused,
				c.targets_refused);
		if_update_stat(c.loops_prevented, prm_st_loops_prevented,
				c.loops_prevented);
		if_update_stat(c.contacts_dropped, prm_st_contacts_dropped,
				c.contacts_dropped);
	}
	/* the store action was committed by the core before it returned */
}

/* push_lookup([mode]), request route */
int w_push_lookup(struct sip_msg *msg, char *mode, char *p2)
{
	pr_request req;
	pr_decision *d;
	pr_engine *e;
	pr_status st;
	str m;
	str callid;
	int rc;

	/* this process' own: a child forgets its parent's (fork guard) */
	e = prm_engine;
	if(e == NULL) {
		LM_ERR("no push_redirect engine in this process\n");
		return -2;
	}
	if(prm_get_mode(msg, mode, &m) < 0)
		return -2;
	if(prm_fill_request(msg, GET_RURI(msg), &req) < 0)
		return -2;
	callid.s = (char *)req.call_id.ptr;
	callid.len = (int)req.call_id.len;

	d = NULL;
	st = pr_push_lookup(e, &req, (const uint8_t *)m.s,
			(size_t)m.len, NULL, &d);
	if(st != PR_STATUS_OK || d == NULL) {
		LM_ERR("push_lookup failed (Call-ID %.*s): %s\n", callid.len,
				ZSW(callid.s), prm_status_str(st));
		pr_decision_free(d);
		return -2;
	}
	rc = pr_decision_script_rc(d);
	if(rc == 1 && prm_apply(msg, d, 1, NULL, &callid) < 0)
		rc = -2;
	prm_account(d, &callid);
	pr_decision_free(d);
	/* a script function never returns 0 (it would stop the script) */
	return (rc == 0) ? -1 : rc;
}

/*
 * The core's memo of this transaction (the Contacts of earlier 3xx replies
 * still to try, and how many redirects were followed): tm drops earlier
 * rounds' replies, so the core hands this back to be kept with the
 * transaction.  It is empty when the next round can derive it from the
 * transaction's branches (a followed 302, a failover): nothing is kept.  In a failure route the XAVP list is the transaction's own
 * (shared memory), so the next round sees it whichever process runs it.
 */
static str prm_memo_name = str_init("push_redirect_memo");

/* the memo kept with the transaction (empty: none); returns whether the
 * transaction has a memo XAVP at all */
static int prm_memo_get(str *memo)
{
	sr_xavp_t *x;

	memo->s = NULL;
	memo->len = 0;
	x = xavp_get(&prm_memo_name, NULL);
	if(x != NULL && x->val.type == SR_XTYPE_STR)
		*memo = x->val.v.s;
	return x != NULL;
}

/* kept: whether the transaction has a memo XAVP to replace (nothing to
 * remove otherwise: a followed 302 or a failover keeps none) */
static int prm_memo_set(pr_decision *d, int kept, str *callid)
{
	pr_bytes b;
	sr_xval_t v;

	if(pr_decision_memo(d, &b) != PR_STATUS_OK)
		return -1;
	if(kept)
		xavp_rm_by_name(&prm_memo_name, 1, NULL);
	/* nothing to keep: the next round derives it from the transaction */
	if(b.len == 0)
		return 0;
	memset(&v, 0, sizeof(v));
	v.type = SR_XTYPE_STR;
	v.v.s.s = (char *)b.ptr;
	v.v.s.len = (int)b.len;
	if(xavp_add_value(&prm_memo_name, &v, NULL) == NULL) {
		LM_ERR("cannot keep the memo with the transaction (Call-ID %.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	return 0;
}

/* branches described without an allocation (more: pkg memory) */
#define PRM_BRANCHES_ON_STACK 8

/* the transaction's branches, for the core, in `stack` when they fit
 * (PRM_BRANCHES_ON_STACK), else in pkg memory the caller frees when the
 * result is not `stack`; NULL on error */
static pr_branch *prm_collect_branches(
		struct cell *t, pr_branch *stack, size_t *count)
{
	pr_branch *br;
	struct sip_msg *rpl;
	int first;
	int i;

	*count = 0;
	if(t->nr_of_outgoings <= 0)
		return NULL;
	if(t->nr_of_outgoings <= PRM_BRANCHES_ON_STACK) {
		br = stack;
	} else {
		br = (pr_branch *)pkg_malloc(
				t->nr_of_outgoings * sizeof(pr_branch));
		if(br == NULL) {
			PKG_MEM_ERROR;
			return NULL;
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
	*count = (size_t)t->nr_of_outgoings;
	return br;
}

/* push_redirect([mode]), failure route */
int w_push_redirect(struct sip_msg *msg, char *mode, char *p2)
{
	pr_request req;
	pr_branch stack_br[PRM_BRANCHES_ON_STACK];
	pr_branch *br;
	size_t nbr;
	pr_decision *d;
	pr_engine *e;
	pr_status st;
	struct cell *t;
	str m;
	str memo;
	str callid;
	int kept;
	int rc;

	/* this process' own: a child forgets its parent's (fork guard) */
	e = prm_engine;
	if(e == NULL) {
		LM_ERR("no push_redirect engine in this process\n");
		return -2;
	}
	if(prm_get_mode(msg, mode, &m) < 0)
		return -2;
	t = prm_tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED) {
		LM_ERR("no transaction: push_redirect() belongs in a failure"
			   " route\n");
		return -2;
	}
	/* $ou: the R-URI as the request arrived */
	if(prm_fill_request(msg, &msg->first_line.u.request.uri, &req) < 0)
		return -2;
	callid.s = (char *)req.call_id.ptr;
	callid.len = (int)req.call_id.len;

	br = prm_collect_branches(t, stack_br, &nbr);
	if(br == NULL) {
		LM_ERR("no branches in the transaction (Call-ID %.*s)\n",
				callid.len, ZSW(callid.s));
		return -2;
	}

	kept = prm_memo_get(&memo);
	d = NULL;
	st = pr_push_redirect(e, &req, br, nbr,
			(const uint8_t *)memo.s, (size_t)memo.len, (const uint8_t *)m.s,
			(size_t)m.len, NULL, &d);
	if(st != PR_STATUS_OK || d == NULL) {
		LM_ERR("push_redirect failed (Call-ID %.*s): %s\n", callid.len,
				ZSW(callid.s), prm_status_str(st));
		pr_decision_free(d);
		if(br != stack_br)
			pkg_free(br);
		return -2;
	}
	rc = pr_decision_script_rc(d);
	if(rc == 1
			&& (prm_apply(msg, d, 0, t, &callid) < 0
					|| prm_memo_set(d, kept, &callid) < 0))
		rc = -2;
	prm_account(d, &callid);
	pr_decision_free(d);
	if(br != stack_br)
		pkg_free(br);
	return (rc == 0) ? -1 : rc;
}
