/*
 * push_redirect module for OpenSIPS - forwarding of SIP PUSH requests
 * (MESSAGE, NOTIFY) between a subscriber's registered terminals: exports,
 * parameters, statistics, process life cycle, and the engine's callbacks
 * into OpenSIPS (usrloc, "myself", the log).
 */

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sr_module.h"
#include "dprint.h"
#include "forward.h"
#include "mem/mem.h"

#include "push_redirect_mod.h"

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);
static void prm_subscriber_proc(int rank);

/* the parameters (SPEC §4), each handed to the core as the cfg is read:
 * OpenSIPS does not tell a setter its parameter's name, hence one each */
static int prm_param_set(const char *name, modparam_t type, void *val);
#define PRM_PARAMS(X)                                                     \
	X(store, STR) X(methods, STR) X(failover_codes, STR) X(fork_mode, STR) \
	X(max_branches, INT) X(max_depth, INT) X(allowed_domains, STR)        \
	X(location_table, STR) X(branch_timeout, INT) X(history_info, INT)   \
	X(store_timeout, INT) X(diversion, INT)
#define PRM_SETTER(_n, _t)                        \
	static int prm_p_##_n(modparam_t type, void *val) \
	{                                             \
		return prm_param_set(#_n, type, val);     \
	}
PRM_PARAMS(PRM_SETTER)

/* clang-format off */
static const cmd_export_t cmds[] = {
	{"push_lookup", (cmd_function)w_push_lookup, {
		{CMD_PARAM_STR | CMD_PARAM_OPT, 0, 0}, {0, 0, 0}},
		REQUEST_ROUTE},
	{"push_redirect", (cmd_function)w_push_redirect, {
		{CMD_PARAM_STR | CMD_PARAM_OPT, 0, 0}, {0, 0, 0}},
		FAILURE_ROUTE},
	{0, 0, {{0, 0, 0}}, 0}
};

#define PRM_EXPORT(_n, _t) \
	{#_n, _t##_PARAM | USE_FUNC_PARAM, (void *)prm_p_##_n},
static const param_export_t params[] = {
	PRM_PARAMS(PRM_EXPORT)
	{0, 0, 0}
};

/* the node's store subscriber (a Redis store): .no set in mod_init() */
static proc_export_t procs[] = {
	{"push_redirect store subscriber", 0, 0, prm_subscriber_proc, 0, 0},
	{0, 0, 0, 0, 0, 0}
};

/* one per pr_stat, named by the core: filled in mod_init(), registered by
 * OpenSIPS right after it */
static stat_export_t mod_stats[PR_STAT_COUNT + 1];

static const dep_export_t deps = {
	{{MOD_TYPE_DEFAULT, "tm", DEP_ABORT},
		{MOD_TYPE_DEFAULT, "usrloc", DEP_ABORT}, {MOD_TYPE_NULL, NULL, 0}},
	{{NULL, NULL}},
};

struct module_exports exports = {
	"push_redirect", MOD_TYPE_DEFAULT, MODULE_VERSION, DEFAULT_DLFLAGS,
	0,         /* load function */
	&deps, cmds,
	0,         /* async functions */
	params, mod_stats, prm_mi_cmds,
	0, 0,      /* pseudo-variables, transformations */
	procs,
	0,         /* pre-init */
	mod_init,
	0,         /* response function */
	mod_destroy, child_init,
	0          /* reload confirm */
};
/* clang-format on */

struct tm_binds prm_tmb;
usrloc_api_t prm_ul;
udomain_t *prm_udomain = NULL;
stat_var *prm_stats[PR_STAT_COUNT];
int prm_avp_memo, prm_avp_hi, prm_avp_div;
/* their names: the core's memo (an AVP of the request, then of its
 * transaction); a branch's History-Info and Diversion values (attributes
 * of the branch, $msg.branch.attr() / $tm.branch.attr() in a script) */
static str prm_memo_name = str_init("push_redirect_memo");
static str prm_hi_name = str_init("push_redirect_history_info");
static str prm_div_name = str_init("push_redirect_diversion");

/* the configuration, owned by the main process; the usrloc table name */
static pr_config *prm_cfg = NULL;
static char *prm_table = "location";
static pid_t prm_cfg_pid = 0;
/* this process' engine; a forked child forgets its parent's
 * (pthread_atfork), so an engine is never used across a fork */
static pr_engine *prm_engine = NULL;

const char *prm_status_str(pr_status st)
{
	static char buf[128];
	size_t n = 0;

	if(pr_status_text(st, (uint8_t *)buf, sizeof(buf) - 1, &n)
			!= PR_STATUS_OK)
		n = (size_t)snprintf(buf, sizeof(buf), "status %u", (unsigned)st);
	buf[n] = '\0';
	return buf;
}

void prm_count(const uint32_t *counters)
{
	int i;

	for(i = 0; i < PR_STAT_COUNT; i++)
		if(counters[i] != 0 && prm_stats[i] != NULL)
			update_stat(prm_stats[i], counters[i]);
}

/* the configuration collects the modparams, before mod_init() */
static int prm_cfg_get(void)
{
	if(prm_cfg != NULL)
		return 0;
	if(pr_config_new(&prm_cfg) != PR_STATUS_OK) {
		LM_ERR("cannot create the configuration\n");
		prm_cfg = NULL;
		return -1;
	}
	prm_cfg_pid = getpid();
	return 0;
}

/* hand one modparam to the core, which validates it: a refused value
 * stops OpenSIPS with one error naming the parameter */
static int prm_param_set(const char *name, modparam_t type, void *val)
{
	char ibuf[24], ebuf[256];
	const char *v;
	size_t n = 0;
	pr_status st;

	if(prm_cfg_get() < 0)
		return -1;
	if(PARAM_TYPE_MASK(type) == INT_PARAM) {
		snprintf(ibuf, sizeof(ibuf), "%d", (int)(long)val);
		v = ibuf;
	} else {
		v = val ? (const char *)val : "";
	}
	st = pr_config_set(prm_cfg, (const uint8_t *)name, strlen(name),
			(const uint8_t *)v, strlen(v));
	if(st != PR_STATUS_OK) {
		if(pr_config_last_error(prm_cfg, (uint8_t *)ebuf, sizeof(ebuf), &n)
						!= PR_STATUS_OK
				|| n == 0)
			n = (size_t)snprintf(ebuf, sizeof(ebuf), "%s", prm_status_str(st));
		LM_ERR("invalid value '%s' for parameter '%s': %.*s\n", v, name,
				(int)n, ebuf);
		return -1;
	}
	/* the cfg parser's strings live as long as OpenSIPS */
	if(strcmp(name, "location_table") == 0)
		prm_table = (char *)val;
	return 0;
}

/* pr_lookup_fn: the valid contacts of an AOR's usrloc record, under the
 * record's lock; the core made the key (as registrar's extract_aor()) */
static int32_t prm_lookup(void *ud, const pr_aor *aor, pr_contacts *out)
{
	str key;
	urecord_t *r;
	ucontact_t *c;
	pr_contact pc;
	time_t now = time(NULL);
	int ret = 0;

	key.s = (char *)aor->key.ptr;
	key.len = (int)(prm_ul.use_domain ? aor->key.len : aor->user_len);
	prm_ul.lock_udomain(prm_udomain, &key);
	if(prm_ul.get_urecord(prm_udomain, &key, &r) != 0) {
		prm_ul.unlock_udomain(prm_udomain, &key);
		return 0; /* no record: no contacts */
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
		if(pr_contacts_add(out, &pc) != PR_STATUS_OK) {
			LM_ERR("cannot hand contact [%.*s] of AOR [%.*s] to the core\n",
					c->c.len, c->c.s, key.len, key.s);
			ret = -1;
			break;
		}
	}
	prm_ul.release_urecord(r, 0);
	prm_ul.unlock_udomain(prm_udomain, &key);
	return ret;
}

/* pr_is_self_fn: OpenSIPS's "myself" (listen addresses and aliases) */
static bool prm_is_self(void *ud, const uint8_t *host, size_t len,
		uint16_t port)
{
	str h = {(char *)host, (int)len};

	return host != NULL && len > 0 && check_self(&h, port, 0) == 1;
}

/* pr_log_fn: the core's log lines into OpenSIPS's log, at their level
 * (pr_log_level's) and with the module's prefix */
static void prm_log(void *ud, pr_log_level lv, const uint8_t *msg, size_t len)
{
	static const int level[] = {L_DBG, L_ERR, L_WARN, L_INFO, L_DBG};

	LM_GEN1(level[lv <= PR_LOG_LEVEL_DEBUG ? lv : 0], "%.*s\n",
			(int)(len > 4096 ? 4096 : len), msg ? (const char *)msg : "");
}

static void prm_engine_forget(void)
{
	prm_engine = NULL;
}

pr_engine *prm_engine_get(void)
{
	pr_status st;

	if(prm_engine != NULL)
		return prm_engine;
	st = pr_engine_new(prm_cfg, prm_lookup, prm_is_self, NULL, &prm_engine);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot start the push_redirect engine: %s\n",
				prm_status_str(st));
		prm_engine = NULL;
		return NULL;
	}
	pr_set_logger(prm_log, NULL,
			is_printable(L_DBG) ? PR_LOG_LEVEL_DEBUG : PR_LOG_LEVEL_INFO);
	/* this process' own handle on the store; a store that fails now is
	 * retried by the core (SPEC 6), so the engine is kept */
	st = pr_engine_open_store(prm_engine);
	if(st != PR_STATUS_OK)
		LM_ERR("cannot open the forwarding store: %s\n", prm_status_str(st));
	/* tm's own limit of branches per transaction */
	st = pr_engine_set_branch_limit(prm_engine, MAX_BRANCHES);
	if(st != PR_STATUS_OK)
		LM_ERR("cannot set the branch limit: %s\n", prm_status_str(st));
	return prm_engine;
}

static int mod_init(void)
{
	int i;

	if(prm_cfg_get() < 0)
		return -1;
	for(i = 0; i < PR_STAT_COUNT; i++) {
		mod_stats[i].name = (char *)pr_stat_name((uint32_t)i);
		mod_stats[i].flags = 0;
		mod_stats[i].stat_pointer = &prm_stats[i];
	}
	if(load_tm_api(&prm_tmb) < 0 || load_ul_api(&prm_ul) < 0
			|| prm_ul.register_udomain(prm_table, &prm_udomain) < 0) {
		LM_ERR("cannot bind to tm and usrloc's table '%s'\n", prm_table);
		return -1;
	}
	if(parse_avp_spec(&prm_memo_name, &prm_avp_memo) < 0
			|| parse_avp_spec(&prm_hi_name, &prm_avp_hi) < 0
			|| parse_avp_spec(&prm_div_name, &prm_avp_div) < 0
			|| pthread_atfork(NULL, NULL, prm_engine_forget)) {
		LM_ERR("cannot register the AVP names or the fork handler\n");
		return -1;
	}
	pr_set_logger(prm_log, NULL, PR_LOG_LEVEL_DEBUG);
	/* the store must be usable before any worker starts: created (with
	 * its folder), migrated, writable; closed again before the fork */
	if(pr_config_check_store(prm_cfg) != PR_STATUS_OK) {
		LM_ERR("cannot use the forwarding store (modparam \"store\"): see"
			   " the error above\n");
		return -1;
	}
	/* a store shared by several nodes (Redis): one process per node keeps
	 * the workers' read caches in step with every node's writes */
	procs[0].no = pr_config_store_subscriber(prm_cfg) ? 1 : 0;
	return 0;
}

static void prm_subscriber_proc(int rank)
{
	pr_set_logger(prm_log, NULL, PR_LOG_LEVEL_INFO);
	pr_config_run_subscriber(prm_cfg);
}

/* the engine (and its store handle) is per process, made after the fork
 * for every process that runs the script, timers or MI */
static int child_init(int rank)
{
	if(rank == PROC_TCP_MAIN)
		return 0;
	return prm_engine_get() != NULL ? 0 : -1;
}

/* every step frees only what this process owns */
static void mod_destroy(void)
{
	pr_engine *e = prm_engine;

	prm_engine = NULL;
	pr_engine_free(e);
	if(prm_cfg_pid != getpid())
		return;
	pr_config_free(prm_cfg);
	prm_cfg = NULL;
}
