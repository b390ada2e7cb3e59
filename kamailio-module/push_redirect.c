/*
 * push_redirect module - forwarding of SIP PUSH requests (MESSAGE, NOTIFY)
 * between the registered terminals of a subscriber, following their
 * redirect and failure replies.
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * A thin module: the reply parser, the decision engine and the forwarding
 * store live in the Rust core (libpush_redirect, linked statically); this
 * file holds the exports, the module parameters, the statistics and the
 * process life cycle (push_redirect_mod.h lists the other files).
 */

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cfg/cfg_struct.h"
#include "core/sr_module.h"
#include "core/dprint.h"
#include "core/globals.h"
#include "core/kemi.h"
#include "core/mem/mem.h"
#include "core/mod_fix.h"
#include "core/route.h"
#include "core/pt.h"

#include "push_redirect_funcs.h"
#include "push_redirect_host.h"
#include "push_redirect_rpc.h"

MODULE_VERSION

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

/* one PARAM_USE_FUNC setter per parameter: Kamailio does not pass the
 * parameter's name to the setter */
#define PRM_PARAM_FUNC(_fn, _name)              \
	static int _fn(modparam_t type, void *val)  \
	{                                           \
		return prm_param_set(_name, type, val); \
	}

static int prm_param_set(const char *name, modparam_t type, void *val);

PRM_PARAM_FUNC(prm_param_store, "store")
PRM_PARAM_FUNC(prm_param_methods, "methods")
PRM_PARAM_FUNC(prm_param_failover_codes, "failover_codes")
PRM_PARAM_FUNC(prm_param_fork_mode, "fork_mode")
PRM_PARAM_FUNC(prm_param_max_branches, "max_branches")
PRM_PARAM_FUNC(prm_param_max_depth, "max_depth")
PRM_PARAM_FUNC(prm_param_allowed_domains, "allowed_domains")
PRM_PARAM_FUNC(prm_param_location_table, "location_table")
PRM_PARAM_FUNC(prm_param_branch_timeout, "branch_timeout")
PRM_PARAM_FUNC(prm_param_history_info, "history_info")
PRM_PARAM_FUNC(prm_param_diversion, "diversion")
PRM_PARAM_FUNC(prm_param_store_timeout, "store_timeout")

/* clang-format off */
static cmd_export_t cmds[] = {
	{"push_lookup",   (cmd_function)w_push_lookup,   0, 0, 0,
		REQUEST_ROUTE},
	{"push_lookup",   (cmd_function)w_push_lookup,   1, fixup_spve_null,
		fixup_free_spve_null, REQUEST_ROUTE},
	{"push_redirect", (cmd_function)w_push_redirect, 0, 0, 0,
		FAILURE_ROUTE},
	{"push_redirect", (cmd_function)w_push_redirect, 1, fixup_spve_null,
		fixup_free_spve_null, FAILURE_ROUTE},
	{0, 0, 0, 0, 0, 0}
};

static param_export_t params[] = {
	{"store",           PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_store},
	{"methods",         PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_methods},
	{"failover_codes",  PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_failover_codes},
	{"fork_mode",       PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_fork_mode},
	{"max_branches",    PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_max_branches},
	{"max_depth",       PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_max_depth},
	{"allowed_domains", PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_allowed_domains},
	{"location_table",  PARAM_STRING | PARAM_USE_FUNC,
		(void *)prm_param_location_table},
	{"branch_timeout",  PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_branch_timeout},
	{"history_info",    PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_history_info},
	{"diversion",       PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_diversion},
	{"store_timeout",   PARAM_INT    | PARAM_USE_FUNC,
		(void *)prm_param_store_timeout},
	{0, 0, 0}
};

/* the statistics, one per pr_stat, named by the core (mod_init() fills
 * the table from pr_stat_name()) */
static stat_export_t mod_stats[PR_STAT_COUNT + 1];

struct module_exports exports = {
	"push_redirect",  /* module name */
	DEFAULT_DLFLAGS,  /* dlopen flags */
	cmds,             /* exported functions */
	params,           /* exported parameters */
	prm_rpc_cmds,     /* exported RPC methods */
	0,                /* exported pseudo-variables */
	0,                /* response handling function */
	mod_init,         /* module initialization function */
	child_init,       /* per-child init function */
	mod_destroy       /* module destroy function */
};
/* clang-format on */

struct tm_binds prm_tmb;
usrloc_api_t prm_ul;
str prm_location_table = STR_NULL;
udomain_t *prm_udomain = NULL;
pr_config *prm_cfg = NULL;
stat_var *prm_stats[PR_STAT_COUNT];
pr_engine *prm_engine = NULL;

/* the process that parsed the cfg (Kamailio's main one): it owns the
 * configuration and the table name, which its children only read */
static pid_t prm_cfg_pid = 0;
/* the process that made prm_engine (an engine inherited through fork()
 * is never used nor freed by the child) */
static pid_t prm_engine_pid = 0;
/* whether the store needs the node's subscriber process (Redis) */
static int prm_subscriber = 0;

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

/* the config object collects the parameters as the cfg file is parsed,
 * i.e. before mod_init() */
static int prm_cfg_get(void)
{
	pr_status st;

	if(prm_cfg != NULL)
		return 0;
	st = pr_config_new(&prm_cfg);
	if(st != PR_STATUS_OK) {
		LM_ERR("cannot create the configuration: %s\n", prm_status_str(st));
		prm_cfg = NULL;
		return -1;
	}
	prm_cfg_pid = getpid();
	return 0;
}

/* hand one modparam to the core, which validates it: a value it refuses
 * makes set_mod_param_regex() fail, and Kamailio does not start */
static int prm_param_set(const char *name, modparam_t type, void *val)
{
	char ibuf[24];
	char ebuf[256];
	size_t n;
	const char *v;
	size_t vlen;
	pr_status st;
	char *tbl;

	if(prm_cfg_get() < 0)
		return -1;
	if(PARAM_TYPE_MASK(type) == PARAM_INT) {
		snprintf(ibuf, sizeof(ibuf), "%d", (int)(long)val);
		v = ibuf;
	} else if(PARAM_TYPE_MASK(type) == PARAM_STRING) {
		v = (const char *)val;
		if(v == NULL)
			v = "";
	} else {
		LM_ERR("parameter '%s': unexpected value type %u\n", name,
				(unsigned)PARAM_TYPE_MASK(type));
		return -1;
	}
	vlen = strlen(v);

	st = pr_config_set(prm_cfg, (const uint8_t *)name, strlen(name),
			(const uint8_t *)v, vlen);
	if(st != PR_STATUS_OK) {
		n = 0;
		if(st != PR_STATUS_INVALID_CONFIG
				|| pr_config_last_error(prm_cfg, (uint8_t *)ebuf,
						   sizeof(ebuf) - 1, &n)
						   != PR_STATUS_OK
				|| n == 0 || n >= sizeof(ebuf))
			snprintf(ebuf, sizeof(ebuf), "%s", prm_status_str(st));
		else
			ebuf[n] = '\0';
		LM_ERR("invalid value '%s' for parameter '%s': %s\n", v, name,
				ebuf);
		return -1;
	}

	if(strcmp(name, "location_table") == 0) {
		if(vlen == 0) {
			LM_ERR("invalid value '' for parameter 'location_table'\n");
			return -1;
		}
		/* usrloc wants a zero-terminated name */
		tbl = pkg_malloc(vlen + 1);
		if(tbl == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		memcpy(tbl, v, vlen + 1);
		if(prm_location_table.s != NULL)
			pkg_free(prm_location_table.s);
		prm_location_table.s = tbl;
		prm_location_table.len = (int)vlen;
	}
	return 0;
}

/* the statistics' export table, from the core's names */
static int prm_stats_table(void)
{
	int i;

	memset(mod_stats, 0, sizeof(mod_stats));
	for(i = 0; i < PR_STAT_COUNT; i++) {
		mod_stats[i].name = (char *)pr_stat_name((uint32_t)i);
		if(mod_stats[i].name == NULL) {
			LM_ERR("the core names no statistic %d\n", i);
			return -1;
		}
		mod_stats[i].flags = 0;
		mod_stats[i].stat_pointer = &prm_stats[i];
	}
	return 0;
}

/* this process' engine: made once per process, after the fork */
static int prm_engine_init(void)
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

/* free the engine if this process made it */
static void prm_engine_destroy(void)
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

/* the store check of mod_init() in a child process that first takes the
 * identity Kamailio's processes will have (as do_suid() gives it): 0 when
 * the store is usable by them */
static int prm_check_store_as(int to_uid, int to_gid)
{
	struct sigaction dfl, old;
	struct passwd *pw;
	pid_t pid, w;
	int status;

	/* no SIGCHLD for Kamailio's handler: it would take this child's exit
	 * for a dead worker's and hold back the next signal (SIGTERM) */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	if(sigaction(SIGCHLD, &dfl, &old) < 0) {
		LM_ERR("cannot set SIGCHLD: %s\n", strerror(errno));
		return -1;
	}
	pid = fork();
	if(pid == 0) {
		if(to_gid != 0 && setgid((gid_t)to_gid) < 0) {
			LM_ERR("cannot change to gid %d: %s\n", to_gid, strerror(errno));
			_exit(2);
		}
		if(to_uid != 0) {
			pw = getpwuid((uid_t)to_uid);
			if(pw == NULL || initgroups(pw->pw_name, pw->pw_gid) < 0
					|| setuid((uid_t)to_uid) < 0) {
				LM_ERR("cannot change to uid %d: %s\n", to_uid,
						strerror(errno));
				_exit(2);
			}
		}
		_exit(pr_config_check_store(prm_cfg) == PR_STATUS_OK ? 0 : 1);
	}
	status = -1;
	if(pid < 0) {
		LM_ERR("cannot fork to check the store as uid %d: %s\n", to_uid,
				strerror(errno));
	} else {
		do {
			w = waitpid(pid, &status, 0);
		} while(w < 0 && errno == EINTR);
		if(w != pid)
			status = -1;
	}
	sigaction(SIGCHLD, &old, NULL);
	return (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
				   ? 0
				   : -1;
}

/* the store must be usable before any worker starts: created (with its
 * folder), migrated, writable; closed again before the fork.  Kamailio
 * runs mod_init() before it drops root for -u/-g (Debian's init script
 * starts it so), so the check runs as that user: files made here as root
 * would be root's, and no worker could write them */
static int prm_check_store(void)
{
	if(geteuid() == 0 && (uid != 0 || gid != 0))
		return prm_check_store_as(uid, gid);
	return pr_config_check_store(prm_cfg) == PR_STATUS_OK ? 0 : -1;
}

/* registrar's own parameters that shape lookup()'s branches, for the core
 * to build them the same way: path_check_local (registrar not loaded, or
 * the parameter not found: 0, registrar's default) */
static int prm_registrar_params(void)
{
	struct sr_module *reg;
	modparam_t type;
	int *v;
	const char *val;

	reg = find_module_by_name("registrar");
	if(reg == NULL)
		return 0;
	type = 0;
	v = (int *)find_param_export(reg, "path_check_local", PARAM_INT, &type);
	if(v == NULL)
		return 0;
	val = (*v > 0) ? "1" : "0";
	if(pr_config_set(prm_cfg, (const uint8_t *)"registrar.path_check_local",
			   sizeof("registrar.path_check_local") - 1,
			   (const uint8_t *)val, 1)
			!= PR_STATUS_OK) {
		LM_ERR("cannot take registrar's path_check_local\n");
		return -1;
	}
	return 0;
}

static int mod_init(void)
{
	bind_usrloc_t bind_usrloc;

	if(prm_cfg_get() < 0)
		return -1;

	if(prm_stats_table() < 0)
		return -1;
	if(register_module_stats(exports.name, mod_stats) != 0) {
		LM_ERR("cannot register the statistics\n");
		return -1;
	}

	/* probe first: load_tm_api() would add a warning of its own */
	if(find_export("load_tm", NO_SCRIPT, 0) == NULL
			|| load_tm_api(&prm_tmb) < 0) {
		LM_ERR("cannot bind to tm: load the tm module before push_redirect\n");
		return -1;
	}

	bind_usrloc = (bind_usrloc_t)find_export("ul_bind_usrloc", 1, 0);
	if(bind_usrloc == NULL || bind_usrloc(&prm_ul) < 0) {
		LM_ERR("cannot bind to usrloc: load the usrloc module before "
			   "push_redirect\n");
		return -1;
	}

	if(prm_registrar_params() < 0)
		return -1;

	if(prm_location_table.s == NULL) {
		prm_location_table.s = pkg_malloc(sizeof("location"));
		if(prm_location_table.s == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		memcpy(prm_location_table.s, "location", sizeof("location"));
		prm_location_table.len = sizeof("location") - 1;
	}

	if(pthread_atfork(NULL, NULL, prm_engine_forget) != 0) {
		LM_ERR("cannot register the fork handler\n");
		return -1;
	}

	/* the core's log lines go to Kamailio's log; each process sets its
	 * level again after the fork (prm_engine_init) */
	pr_set_logger(prm_log_bridge, NULL, PR_LOG_LEVEL_DEBUG);

	/* the store must be usable before any worker starts: created (with
	 * its folder), migrated, writable; closed again before the fork */
	if(prm_check_store() < 0) {
		LM_ERR("cannot use the forwarding store (modparam \"store\"): see"
			   " the error above\n");
		return -1;
	}

	/* a store shared by several nodes (Redis): one process per node keeps
	 * the workers' read caches in step with every node's writes */
	if(pr_config_store_subscriber(prm_cfg)) {
		register_procs(1);
		cfg_register_child(1);
		prm_subscriber = 1;
	}
	return 0;
}

/* the node's store subscriber: forked from the main process; runs until
 * the main process is gone */
static int prm_subscriber_fork(void)
{
	int pid;

	pid = fork_process(PROC_NOCHLDINIT, "push_redirect store subscriber", 1);
	if(pid < 0) {
		LM_ERR("cannot fork the store subscriber\n");
		return -1;
	}
	if(pid == 0) {
		if(cfg_child_init())
			exit(-1);
		pr_set_logger(prm_log_bridge, NULL, PR_LOG_LEVEL_INFO);
		pr_config_run_subscriber(prm_cfg);
		exit(0);
	}
	return 0;
}

static int child_init(int rank)
{
	if(rank == PROC_INIT) {
		/* once, in the main process, after every mod_init() and before
		 * the fork: usrloc creates the table's shared structures */
		if(prm_ul.register_udomain(prm_location_table.s, &prm_udomain)
				< 0) {
			LM_ERR("cannot register usrloc table '%s'\n",
					prm_location_table.s);
			return -1;
		}
		return 0;
	}
	if(rank == PROC_MAIN && prm_subscriber && prm_subscriber_fork() < 0)
		return -1;
	if(rank == PROC_POSTCHILDINIT || (rank == PROC_MAIN && !dont_fork))
		return 0;
	/* A child takes its own reference to the shared cfg block now, not
	 * lazily: a process still without one (an idle TCP reader, ctl, the
	 * slow timer) takes cfg_global_lock in Kamailio's SIGTERM handler
	 * (its SIG_DEBUG code, on in Debian's builds) and there, at shutdown,
	 * it can wait forever for a lock whose holder has exited: the main
	 * process then waits for it until exit_timeout. Seen with stock
	 * modules alone (tests/e2e/crash.rs, crash_loop_stock_udp). The same
	 * update the handler makes, made early (no per-child callbacks: as
	 * cfg_main_set_local() does). */
	cfg_update_no_cbs();
	/* the engine (and its store handle) is per process: only for the
	 * processes that run the script, the timers (tm's fr timeouts run
	 * failure routes) and RPC */
	if(rank == PROC_TCP_MAIN)
		return 0;
	return prm_engine_init();
}

/* Kamailio runs it in the main process (cleanup() on SIGTERM, or after a
 * child died); every step frees only what this process owns, and leaves
 * NULL behind, so a second way out finds nothing to free */
static void mod_destroy(void)
{
	prm_engine_destroy();
	if(prm_cfg_pid != getpid())
		return;
	pr_config_free(prm_cfg);
	prm_cfg = NULL;
	if(prm_location_table.s != NULL) {
		pkg_free(prm_location_table.s);
		prm_location_table.s = NULL;
		prm_location_table.len = 0;
	}
}

/* clang-format off */
/* the KEMI exports: KSR.push_redirect.<name>() in Lua, Python, JavaScript
 * routing scripts; the same return values as the script functions (the
 * struct is the same in Kamailio 5.6, 6.0 and 6.1) */
static sr_kemi_t sr_kemi_push_redirect_exports[] = {
	{ str_init("push_redirect"), str_init("push_lookup"),
		SR_KEMIP_INT, ki_push_lookup,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("push_redirect"), str_init("push_lookup_mode"),
		SR_KEMIP_INT, ki_push_lookup_mode,
		{ SR_KEMIP_STR, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("push_redirect"), str_init("push_redirect"),
		SR_KEMIP_INT, ki_push_redirect,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("push_redirect"), str_init("push_redirect_mode"),
		SR_KEMIP_INT, ki_push_redirect_mode,
		{ SR_KEMIP_STR, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},

	{ {0, 0}, {0, 0}, 0, NULL, { 0, 0, 0, 0, 0, 0 } }
};
/* clang-format on */

/* Kamailio's loader calls it when the module is loaded, before the cfg's
 * modparams: the KEMI table is registered here, as in Kamailio's modules */
int mod_register(char *path, int *dlflags, void *p1, void *p2)
{
	sr_kemi_modules_add(sr_kemi_push_redirect_exports);
	return 0;
}
