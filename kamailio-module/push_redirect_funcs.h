/*
 * push_redirect module - script functions
 *
 * This file is part of push_redirect, a Kamailio module.
 */

#ifndef _PUSH_REDIRECT_FUNCS_H_
#define _PUSH_REDIRECT_FUNCS_H_

#include "core/parser/msg_parser.h"
#include "core/str.h"

/* the work of push_lookup([mode]) (request route) and push_redirect([mode])
 * (failure route); mode NULL or empty: fork_mode.  1 / -1 / -2, never 0
 * (a script function returning 0 stops the script) */
int prm_push_lookup(struct sip_msg *msg, str *mode);
int prm_push_redirect(struct sip_msg *msg, str *mode);

/* the script wrappers: read the fixed-up argument, call the glue */
int w_push_lookup(struct sip_msg *msg, char *mode, char *p2);
int w_push_redirect(struct sip_msg *msg, char *mode, char *p2);

/* the KEMI wrappers: KSR.push_redirect.push_lookup(),
 * push_lookup_mode(mode), push_redirect(), push_redirect_mode(mode) */
int ki_push_lookup(struct sip_msg *msg);
int ki_push_lookup_mode(struct sip_msg *msg, str *mode);
int ki_push_redirect(struct sip_msg *msg);
int ki_push_redirect_mode(struct sip_msg *msg, str *mode);

#endif
