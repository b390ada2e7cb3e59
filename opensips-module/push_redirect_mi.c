/*
 * push_redirect module for OpenSIPS - the MI commands: the Kamailio
 * module's RPC commands with the same arguments, reply fields and errors
 * (400 for a bad argument, 500 otherwise, the core's reason as message).
 * The core validates every argument; this file reads them, shapes replies.
 */

#include <stdio.h>
#include <string.h>

#include "dprint.h"

#include "push_redirect_mod.h"

#define PRM_MI_CMD(_f) \
	static mi_response_t *_f(const mi_params_t *params, struct mi_handler *h)
#define PRM_MI_ERR(_c, _m) init_mi_error((_c), (_m), (int)strlen(_m))
/* this process' engine, or an MI error */
#define PRM_MI_ENGINE(_e)                        \
	if(((_e) = prm_engine_get()) == NULL)        \
	return PRM_MI_ERR(500, "push_redirect is not" \
						   " initialised in this process")

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
	int code = st == PR_STATUS_INVALID_ARGUMENT ? 400 : 500;
	char buf[512];
	size_t n = 0;

	prm_mi_count(e);
	if(pr_engine_last_error(e, (uint8_t *)buf, sizeof(buf), &n)
					== PR_STATUS_OK
			&& n > 0)
		return init_mi_error(code, buf, (int)n);
	return PRM_MI_ERR(code, prm_status_str(st));
}

/* an optional string argument (a number is taken as text): empty when
 * absent */
static str prm_mi_opt(const mi_params_t *params, char *name)
{
	str s = {NULL, 0};

	if(try_get_mi_string_param(params, name, &s.s, &s.len) != 0)
		s.len = 0;
	return s;
}

static int prm_mi_str(mi_item_t *o, char *name, pr_bytes b)
{
	return add_mi_string(o, name, strlen(name),
			b.len ? (char *)b.ptr : "", (int)b.len);
}

static int prm_mi_num(mi_item_t *o, char *name, double v)
{
	return add_mi_number(o, name, strlen(name), v);
}

/* one object per stored forwarding, in an array */
static mi_response_t *prm_mi_entries(pr_engine *e, str aor)
{
	mi_response_t *resp;
	mi_item_t *arr, *o;
	pr_entries *l = NULL;
	pr_entry it;
	pr_status st;
	size_t i;

	st = pr_rpc_list(e, (const uint8_t *)aor.s, (size_t)aor.len, &l);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	resp = init_mi_result_array(&arr);
	for(i = 0; resp != NULL && i < pr_entries_count(l); i++) {
		if(pr_entries_get(l, i, &it) != PR_STATUS_OK)
			break;
		o = add_mi_object(arr, NULL, 0);
		if(o == NULL || prm_mi_str(o, "aor", it.aor) < 0
				|| prm_mi_str(o, "service", it.service) < 0
				|| prm_mi_str(o, "kind", it.kind) < 0
				|| prm_mi_str(o, "targets", it.targets) < 0
				|| prm_mi_num(o, "expires_in", (double)it.expires_in) < 0
				|| prm_mi_num(o, "created", (double)it.created_at) < 0
				|| prm_mi_num(o, "learned_status", it.learned_status) < 0
				|| prm_mi_str(o, "learned_from", it.learned_from) < 0) {
			free_mi_response(resp);
			resp = PRM_MI_ERR(500, "cannot build the reply");
			break;
		}
	}
	pr_entries_free(l);
	return resp;
}

PRM_MI_CMD(prm_mi_list)
{
	pr_engine *e;

	PRM_MI_ENGINE(e);
	return prm_mi_entries(e, prm_mi_opt(params, "aor"));
}

PRM_MI_CMD(prm_mi_get)
{
	pr_engine *e;
	str aor = prm_mi_opt(params, "aor");

	PRM_MI_ENGINE(e);
	if(aor.len <= 0)
		return PRM_MI_ERR(400, "usage: push_redirect_get aor");
	return prm_mi_entries(e, aor);
}

PRM_MI_CMD(prm_mi_set)
{
	pr_engine *e;
	str aor = prm_mi_opt(params, "aor");
	str target = prm_mi_opt(params, "target");
	str service = prm_mi_opt(params, "service");
	str ttl = prm_mi_opt(params, "ttl_seconds");
	char buf[512];
	pr_status st;

	PRM_MI_ENGINE(e);
	st = pr_rpc_set(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)target.s, (size_t)target.len,
			(const uint8_t *)service.s, (size_t)service.len,
			(const uint8_t *)ttl.s, (size_t)ttl.len);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	LM_INFO("forwarding of %.*s provisioned to %.*s\n", aor.len, aor.s,
			target.len, target.s);
	snprintf(buf, sizeof(buf), "Ok. forwarding of %.*s set", aor.len, aor.s);
	return init_mi_result_string(buf, (int)strlen(buf));
}

PRM_MI_CMD(prm_mi_remove)
{
	pr_engine *e;
	str aor = prm_mi_opt(params, "aor");
	str service = prm_mi_opt(params, "service");
	char buf[64];
	size_t n = 0;
	pr_status st;

	PRM_MI_ENGINE(e);
	st = pr_rpc_remove(e, (const uint8_t *)aor.s, (size_t)aor.len,
			(const uint8_t *)service.s, (size_t)service.len, &n);
	if(st != PR_STATUS_OK)
		return prm_mi_fault(e, st);
	prm_mi_count(e);
	snprintf(buf, sizeof(buf), "Ok. %zu forwarding(s) removed", n);
	return init_mi_result_string(buf, (int)strlen(buf));
}

/* the counters, the number of stored forwardings, and the store as this
 * (MI) process sees it */
PRM_MI_CMD(prm_mi_stats)
{
	pr_engine *e;
	mi_response_t *resp;
	mi_item_t *o;
	pr_store_state ss;
	size_t entries = 0;
	int i, bad = 0;

	PRM_MI_ENGINE(e);
	/* left 0 when it fails (outputs are written on success only) */
	(void)pr_engine_store_count(e, &entries);
	prm_mi_count(e);
	if((resp = init_mi_result_object(&o)) == NULL)
		return NULL;
	for(i = 0; i < PR_STAT_COUNT; i++)
		bad |= prm_mi_num(o, (char *)pr_stat_name((uint32_t)i),
					   (double)get_stat_val(prm_stats[i]))
			   < 0;
	bad |= prm_mi_num(o, "stored_forwardings", (double)entries) < 0;
	if(pr_engine_store_state(e, &ss) == PR_STATUS_OK)
		bad |= prm_mi_str(o, "store", ss.backend) < 0
			   || prm_mi_str(o, "store_state", ss.state) < 0
			   || prm_mi_num(o, "store_failing_since",
						  (double)ss.failing_since)
						  < 0
			   || prm_mi_num(o, "store_queued", (double)ss.queued) < 0;
	if(bad) {
		free_mi_response(resp);
		return PRM_MI_ERR(500, "cannot build the reply");
	}
	return resp;
}

/* clang-format off */
/* the RPC commands of the Kamailio module, as MI commands; positional
 * arguments are matched to a recipe by their number */
#define PRM_MI_END {EMPTY_MI_RECIPE}
const mi_export_t prm_mi_cmds[] = {
	{"push_redirect_list", "[aor]: the stored forwardings", 0, 0,
		{{prm_mi_list, {0}}, {prm_mi_list, {"aor", 0}}, PRM_MI_END}},
	{"push_redirect_get", "aor: the forwardings of one AOR", 0, 0,
		{{prm_mi_get, {"aor", 0}}, PRM_MI_END}},
	{"push_redirect_set", "aor target [service] [ttl_seconds]", 0, 0,
		{{prm_mi_set, {"aor", "target", 0}},
		 {prm_mi_set, {"aor", "target", "service", 0}},
		 {prm_mi_set, {"aor", "target", "service", "ttl_seconds", 0}},
		 PRM_MI_END}},
	{"push_redirect_remove", "aor [service]: remove forwardings", 0, 0,
		{{prm_mi_remove, {"aor", 0}}, {prm_mi_remove, {"aor", "service", 0}},
		 PRM_MI_END}},
	{"push_redirect_stats", "the counters and the store's state", 0, 0,
		{{prm_mi_stats, {0}}, PRM_MI_END}},
	{EMPTY_MI_EXPORT}
};
/* clang-format on */
