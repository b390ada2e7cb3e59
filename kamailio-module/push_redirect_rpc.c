/*
 * push_redirect module - RPC commands
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * push_redirect.list [aor], .get aor, .set aor target [service] [ttl],
 * .remove aor [service], .stats.  Arguments are validated by the Rust core
 * (a bad URI or TTL is an RPC fault and writes nothing); this file only
 * reads the arguments and shapes the replies.
 */

#include <string.h>

#include "core/dprint.h"
#include "core/rpc.h"
#include "core/str.h"

#include "push_redirect_mod.h"
#include "push_redirect_rpc.h"

/* the reason of the engine's last failure, for an RPC fault */
static const char *prm_rpc_why(pr_engine *e, pr_status st)
{
	static char buf[512];
	size_t n;

	n = 0;
	if(e == NULL
			|| pr_engine_last_error(e, (uint8_t *)buf, sizeof(buf) - 1, &n)
					   != PR_STATUS_OK
			|| n == 0 || n >= sizeof(buf))
		return prm_status_str(st);
	buf[n] = '\0';
	return buf;
}

/* what the store counted in this process outside a decision (a failed
 * RPC write, queued writes that landed): into the statistics */
static void prm_rpc_count(pr_engine *e)
{
	uint32_t c[PR_STAT_COUNT];
	int i;

	memset(c, 0, sizeof(c));
	if(e == NULL || pr_engine_take_counters(e, c, PR_STAT_COUNT) != PR_STATUS_OK)
		return;
	for(i = 0; i < PR_STAT_COUNT; i++)
		if(c[i] != 0 && prm_stats[i] != NULL)
			update_stat(prm_stats[i], c[i]);
}

static void prm_rpc_fault(rpc_t *rpc, void *ctx, pr_engine *e, pr_status st)
{
	rpc->fault(ctx, (st == PR_STATUS_INVALID_ARGUMENT) ? 400 : 500, "%s",
			prm_rpc_why(e, st));
}

/* this process' engine, or a fault */
static pr_engine *prm_rpc_engine(rpc_t *rpc, void *ctx)
{
	pr_engine *e;

	/* a child forgets its parent's engine (push_redirect.c) */
	e = prm_engine;
	if(e == NULL)
		rpc->fault(ctx, 500, "push_redirect is not initialised in this"
							 " process");
	return e;
}

/* an optional argument as text ('.': kamcmd sends "600" as an integer):
 * empty when absent */
static void prm_rpc_opt(rpc_t *rpc, void *ctx, str *s)
{
	s->s = NULL;
	s->len = 0;
	if(rpc->scan(ctx, "*.S", s) < 1) {
		s->s = NULL;
		s->len = 0;
	}
}

#define PRM_STR(_b) ((_b).len > 0 ? (int)(_b).len : 0), ((char *)(_b).ptr)

/* one struct per stored forwarding */
static void prm_rpc_entries(rpc_t *rpc, void *ctx, pr_engine *e, str *aor)
{
	pr_entries *l;
	pr_entry it;
	pr_status st;
	size_t i;
	size_t n;
	void *th;
	str aor_s, svc_s, kind_s, tgt_s, from_s;

	l = NULL;
	st = pr_rpc_list(e, (const uint8_t *)aor->s, (size_t)aor->len, &l);
	prm_rpc_count(e);
	if(st != PR_STATUS_OK) {
		prm_rpc_fault(rpc, ctx, e, st);
		return;
	}
	n = pr_entries_count(l);
	for(i = 0; i < n; i++) {
		memset(&it, 0, sizeof(it));
		if(pr_entries_get(l, i, &it) != PR_STATUS_OK)
			break;
		aor_s.s = (char *)it.aor.ptr;
		aor_s.len = (int)it.aor.len;
		svc_s.s = (char *)it.service.ptr;
		svc_s.len = (int)it.service.len;
		kind_s.s = (char *)it.kind.ptr;
		kind_s.len = (int)it.kind.len;
		tgt_s.s = (char *)it.targets.ptr;
		tgt_s.len = (int)it.targets.len;
		from_s.s = (char *)(it.learned_from.len ? it.learned_from.ptr
												: (const uint8_t *)"");
		from_s.len = (int)it.learned_from.len;
		if(rpc->add(ctx, "{", &th) < 0) {
			rpc->fault(ctx, 500, "cannot build the reply");
			break;
		}
		if(rpc->struct_add(th, "SSSSdddS", "aor", &aor_s, "service", &svc_s,
				   "kind", &kind_s, "targets", &tgt_s, "expires_in",
				   (int)it.expires_in, "created", (int)it.created_at, "learned_status",
				   (int)it.learned_status, "learned_from", &from_s)
				< 0) {
			rpc->fault(ctx, 500, "cannot build the reply");
			break;
		}
	}
	pr_entries_free(l);
}

static const char *prm_rpc_list_doc[2] = {
		"List the stored forwardings: [aor]", 0};

static void prm_rpc_list(rpc_t *rpc, void *ctx)
{
	pr_engine *e;
	str aor;

	if((e = prm_rpc_engine(rpc, ctx)) == NULL)
		return;
	prm_rpc_opt(rpc, ctx, &aor);
	prm_rpc_entries(rpc, ctx, e, &aor);
}

static const char *prm_rpc_get_doc[2] = {
		"The stored forwardings of one AOR: aor", 0};

static void prm_rpc_get(rpc_t *rpc, void *ctx)
{
	pr_engine *e;
	str aor;

	if((e = prm_rpc_engine(rpc, ctx)) == NULL)
		return;
	if(rpc->scan(ctx, "S", &aor) < 1) {
		rpc->fault(ctx, 400, "usage: push_redirect.get aor");
		return;
	}
	if(aor.len <= 0) {
		rpc->fault(ctx, 400, "usage: push_redirect.get aor");
		return;
	}
	prm_rpc_entries(rpc, ctx, e, &aor);
}

static const char *prm_rpc_set_doc[2] = {
		"Provision a forwarding: aor target [service] [ttl_seconds]", 0};

static void prm_rpc_set(rpc_t *rpc, void *ctx)
{
	pr_engine *e;
	pr_status st;
	str aor, target, service, ttl;

	if((e = prm_rpc_engine(rpc, ctx)) == NULL)
		return;
	if(rpc->scan(ctx, "SS", &aor, &target) < 2) {
		rpc->fault(ctx, 400,
				"usage: push_redirect.set aor target [service] [ttl_seconds]");
		return;
	}
	prm_rpc_opt(rpc, ctx, &service);
	prm_rpc_opt(rpc, ctx, &ttl);
	st = pr_rpc_set(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)target.s, (size_t)target.len,
			(const uint8_t *)service.s, (size_t)service.len,
			(const uint8_t *)ttl.s, (size_t)ttl.len);
	prm_rpc_count(e);
	if(st != PR_STATUS_OK) {
		prm_rpc_fault(rpc, ctx, e, st);
		return;
	}
	LM_INFO("forwarding of %.*s provisioned to %.*s (service %.*s, ttl"
			" %.*s)\n",
			aor.len, aor.s, target.len, target.s, service.len ? service.len : 1,
			service.len ? service.s : "*", ttl.len ? ttl.len : 5,
			ttl.len ? ttl.s : "never");
	rpc->rpl_printf(ctx, "Ok. forwarding of %.*s set", aor.len, aor.s);
}

static const char *prm_rpc_remove_doc[2] = {
		"Remove forwardings: aor [service]", 0};

static void prm_rpc_remove(rpc_t *rpc, void *ctx)
{
	pr_engine *e;
	pr_status st;
	str aor, service;
	size_t n;

	if((e = prm_rpc_engine(rpc, ctx)) == NULL)
		return;
	if(rpc->scan(ctx, "S", &aor) < 1) {
		rpc->fault(ctx, 400, "usage: push_redirect.remove aor [service]");
		return;
	}
	prm_rpc_opt(rpc, ctx, &service);
	n = 0;
	st = pr_rpc_remove(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)service.s, (size_t)service.len, &n);
	prm_rpc_count(e);
	if(st != PR_STATUS_OK) {
		prm_rpc_fault(rpc, ctx, e, st);
		return;
	}
	rpc->rpl_printf(ctx, "Ok. %u forwarding(s) removed", (unsigned)n);
}

static const char *prm_rpc_stats_doc[2] = {
		"The module's counters and the number of stored forwardings", 0};

static void prm_rpc_stats(rpc_t *rpc, void *ctx)
{
	pr_engine *e;
	void *th;
	size_t entries;
	int i;
	pr_store_state ss;
	str backend, state;

	if((e = prm_rpc_engine(rpc, ctx)) == NULL)
		return;
	entries = 0;
	if(pr_engine_store_count(e, &entries) != PR_STATUS_OK)
		entries = 0;
	prm_rpc_count(e);
	if(rpc->add(ctx, "{", &th) < 0) {
		rpc->fault(ctx, 500, "cannot build the reply");
		return;
	}
	for(i = 0; i < PR_STAT_COUNT; i++)
		rpc->struct_add(th, "u", pr_stat_name((uint32_t)i),
				(unsigned)get_stat_val(prm_stats[i]));
	rpc->struct_add(th, "u", "stored_forwardings", (unsigned)entries);
	/* the store as this (RPC) process sees it */
	memset(&ss, 0, sizeof(ss));
	if(pr_engine_store_state(e, &ss) == PR_STATUS_OK) {
		backend.s = (char *)ss.backend.ptr;
		backend.len = (int)ss.backend.len;
		state.s = (char *)ss.state.ptr;
		state.len = (int)ss.state.len;
		rpc->struct_add(th, "SSdu", "store", &backend, "store_state", &state,
				"store_failing_since", (int)ss.failing_since, "store_queued",
				(unsigned)ss.queued);
	}
}

/* clang-format off */
rpc_export_t prm_rpc_cmds[] = {
	{"push_redirect.list",   prm_rpc_list,   prm_rpc_list_doc,   RET_ARRAY},
	{"push_redirect.get",    prm_rpc_get,    prm_rpc_get_doc,    RET_ARRAY},
	{"push_redirect.set",    prm_rpc_set,    prm_rpc_set_doc,    0},
	{"push_redirect.remove", prm_rpc_remove, prm_rpc_remove_doc, 0},
	{"push_redirect.stats",  prm_rpc_stats,  prm_rpc_stats_doc,  0},
	{0, 0, 0, 0}
};
/* clang-format on */
