/*
 * push_redirect module for OpenSIPS - the MI commands
 *
 * push_redirect_list [aor], _get aor, _set aor target [service]
 * [ttl_seconds], _remove aor [service], _stats: the Kamailio module's RPC
 * commands, with the same arguments, reply fields and errors (code 400 for
 * a bad argument, 500 otherwise, the core's reason as the message).  The
 * core validates every argument; this file reads them and shapes replies.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dprint.h"

#include "push_redirect_mod.h"

#define PRM_MI_ERR(_c, _m) init_mi_error((_c), (_m), (int)strlen(_m))

/* what the store counted outside a decision (a failed write, queued writes
 * that landed) into the statistics */
static void prm_mi_count(pr_engine *e)
{
	uint32_t c[PR_STAT_COUNT];

	memset(c, 0, sizeof(c));
	if(pr_engine_take_counters(e, c, PR_STAT_COUNT) == PR_STATUS_OK)
		prm_count(c);
}

/* the engine's reason for a failed call, as an MI error */
static mi_response_t *prm_mi_fault(pr_engine *e, pr_status st)
{
	char buf[512];
	size_t n = 0;

	prm_mi_count(e);
	if(pr_engine_last_error(e, (uint8_t *)buf, sizeof(buf) - 1, &n)
					!= PR_STATUS_OK
			|| n == 0 || n >= sizeof(buf))
		snprintf(buf, sizeof(buf), "%s", prm_status_str(st));
	else
		buf[n] = '\0';
	return PRM_MI_ERR(st == PR_STATUS_INVALID_ARGUMENT ? 400 : 500, buf);
}

/* an optional string argument: empty when absent */
static void prm_mi_opt(const mi_params_t *params, char *name, str *s)
{
	if(try_get_mi_string_param(params, name, &s->s, &s->len) != 0) {
		s->s = NULL;
		s->len = 0;
	}
}

/* a text reply, as the RPC's rpl_printf() */
static mi_response_t *prm_mi_ok(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if(n < 0 || n >= (int)sizeof(buf))
		n = (n < 0) ? 0 : (int)sizeof(buf) - 1;
	return init_mi_result_string(buf, n);
}

static int prm_mi_str(mi_item_t *o, char *name, pr_bytes b)
{
	return add_mi_string(o, name, strlen(name), (char *)(b.ptr ? b.ptr : (const uint8_t *)""), (int)b.len);
}

/* one object per stored forwarding, in an array */
static mi_response_t *prm_mi_entries(pr_engine *e, str *aor)
{
	mi_response_t *resp;
	mi_item_t *arr, *o;
	pr_entries *l = NULL;
	pr_entry it;
	pr_status st;
	size_t i, n;

	st = pr_rpc_list(e, (const uint8_t *)aor->s, (size_t)aor->len, &l);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	resp = init_mi_result_array(&arr);
	n = pr_entries_count(l);
	for(i = 0; resp != NULL && i < n; i++) {
		if(pr_entries_get(l, i, &it) != PR_STATUS_OK)
			break;
		o = add_mi_object(arr, NULL, 0);
		if(o == NULL || prm_mi_str(o, "aor", it.aor) < 0
				|| prm_mi_str(o, "service", it.service) < 0
				|| prm_mi_str(o, "kind", it.kind) < 0
				|| prm_mi_str(o, "targets", it.targets) < 0
				|| add_mi_number(o, MI_SSTR("expires_in"), (double)it.expires_in) < 0
				|| add_mi_number(o, MI_SSTR("created"), (double)it.created_at) < 0
				|| add_mi_number(o, MI_SSTR("learned_status"), it.learned_status) < 0
				|| prm_mi_str(o, "learned_from", it.learned_from) < 0) {
			free_mi_response(resp);
			resp = PRM_MI_ERR(500, "cannot build the reply");
		}
	}
	pr_entries_free(l);
	return resp;
}

mi_response_t *prm_mi_list(const mi_params_t *params, struct mi_handler *h)
{
	pr_engine *e = prm_engine_get();
	str aor;

	if(e == NULL)
		return PRM_MI_ERR(500, "push_redirect is not initialised in this process");
	prm_mi_opt(params, "aor", &aor);
	return prm_mi_entries(e, &aor);
}

mi_response_t *prm_mi_get(const mi_params_t *params, struct mi_handler *h)
{
	pr_engine *e = prm_engine_get();
	str aor;

	if(e == NULL)
		return PRM_MI_ERR(500, "push_redirect is not initialised in this process");
	prm_mi_opt(params, "aor", &aor);
	if(aor.len <= 0)
		return PRM_MI_ERR(400, "usage: push_redirect_get aor");
	return prm_mi_entries(e, &aor);
}

mi_response_t *prm_mi_set(const mi_params_t *params, struct mi_handler *h)
{
	pr_engine *e = prm_engine_get();
	str aor, target, service, ttl;
	pr_status st;

	if(e == NULL)
		return PRM_MI_ERR(500, "push_redirect is not initialised in this process");
	prm_mi_opt(params, "aor", &aor);
	prm_mi_opt(params, "target", &target);
	prm_mi_opt(params, "service", &service);
	prm_mi_opt(params, "ttl_seconds", &ttl);
	st = pr_rpc_set(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)target.s, (size_t)target.len,
			(const uint8_t *)service.s, (size_t)service.len,
			(const uint8_t *)ttl.s, (size_t)ttl.len);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	LM_INFO("forwarding of %.*s provisioned to %.*s (service %.*s, ttl %.*s)\n",
			aor.len, aor.s, target.len, target.s, service.len ? service.len : 1,
			service.len ? service.s : "*", ttl.len ? ttl.len : 5,
			ttl.len ? ttl.s : "never");
	return prm_mi_ok("Ok. forwarding of %.*s set", aor.len, aor.s);
}

mi_response_t *prm_mi_remove(const mi_params_t *params, struct mi_handler *h)
{
	pr_engine *e = prm_engine_get();
	str aor, service;
	size_t n = 0;
	pr_status st;

	if(e == NULL)
		return PRM_MI_ERR(500, "push_redirect is not initialised in this process");
	prm_mi_opt(params, "aor", &aor);
	prm_mi_opt(params, "service", &service);
	st = pr_rpc_remove(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)service.s, (size_t)service.len, &n);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	return prm_mi_ok("Ok. %u forwarding(s) removed", (unsigned)n);
}

mi_response_t *prm_mi_stats(const mi_params_t *params, struct mi_handler *h)
{
	pr_engine *e = prm_engine_get();
	mi_response_t *resp;
	mi_item_t *o;
	pr_store_state ss;
	size_t entries = 0;
	int i, bad = 0;

	if(e == NULL)
		return PRM_MI_ERR(500, "push_redirect is not initialised in this process");
	if(pr_engine_store_count(e, &entries) != PR_STATUS_OK)
		entries = 0;
	prm_mi_count(e);
	resp = init_mi_result_object(&o);
	if(resp == NULL)
		return NULL;
	for(i = 0; i < PR_STAT_COUNT; i++)
		bad |= add_mi_number(o, (char *)pr_stat_name((uint32_t)i),
				strlen(pr_stat_name((uint32_t)i)),
				(double)get_stat_val(prm_stats[i])) < 0;
	bad |= add_mi_number(o, MI_SSTR("stored_forwardings"), (double)entries) < 0;
	/* the store as this (MI) process sees it */
	memset(&ss, 0, sizeof(ss));
	if(pr_engine_store_state(e, &ss) == PR_STATUS_OK)
		bad |= prm_mi_str(o, "store", ss.backend) < 0
			   || prm_mi_str(o, "store_state", ss.state) < 0
			   || add_mi_number(o, MI_SSTR("store_failing_since"),
						  (double)ss.failing_since) < 0
			   || add_mi_number(o, MI_SSTR("store_queued"), (double)ss.queued) < 0;
	if(bad) {
		free_mi_response(resp);
		return PRM_MI_ERR(500, "cannot build the reply");
	}
	return resp;
}
