/*
 * push_redirect module - per-branch headers (History-Info, Diversion)
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * The core writes, for each new branch, the History-Info (RFC 7044) and
 * Diversion (RFC 5806) values that branch carries: each branch its own
 * path's entries (none for push_lookup()'s first delivery to the AOR's
 * own registered contacts: then nothing here runs at all).
 *
 * A failure round with one new branch (serial forking, one Contact) adds
 * them as lumps of the request the failure route relays: tm's faked copy
 * of the transaction's request, whose own lumps go to the branches
 * t_relay() creates in that route and are freed after it.  Otherwise (a
 * request route, whose lumps tm clones into the transaction and so into
 * every later round's branches; several branches of one round) a header
 * lump would go to every branch, so a TMCB_REQUEST_FWDED callback of the
 * transaction adds them: tm runs it in prepare_new_uac() once per new
 * branch, with the branch's R-URI in the message and the lump lists
 * duplicated for that branch alone (they are freed once its buffer is
 * built).  The operator needs no branch_route, and one registered callback
 * serves every later round of the transaction.
 *
 * Between push_lookup()/push_redirect() and the t_relay() that builds the
 * branches, the callback's values wait in this process (t_relay() follows
 * in the same route, in the same process): a buffer of the process,
 * reused, labelled with the message's id (a faked request in a failure
 * route carries the id of the request it was made from) and Call-ID, and
 * read by the branch's R-URI.
 * Nothing here decides: the core made the values.
 */

#include <string.h>

#include "core/data_lump.h"
#include "core/dprint.h"
#include "core/mem/mem.h"
#include "core/parser/msg_parser.h"
#include "core/parser/parse_hname2.h"
#include "core/route.h"
#include "core/strutils.h"
#include "core/ut.h"
#include "modules/tm/t_hooks.h"

#include "push_redirect_hdr.h"

static str prm_hi_hname = str_init("History-Info");

/* the values of the last decision of this process: for each branch with
 * values, three lengths (int) then its R-URI, History-Info and Diversion
 * values */
static struct
{
	unsigned int msg_id; /* the message they are for */
	int callid_len;		 /* and its Call-ID (the first bytes of buf) */
	int valid;
	char *buf; /* pkg memory, grown as needed, kept */
	int size;
	int len;
} prm_stash;

/* the message a callback was registered for in a request route (tm keeps
 * it on its early list until t_relay() creates the transaction) */
static unsigned int prm_cb_msg_id;
static int prm_cb_msg_set;

int prm_hdr_read(struct sip_msg *msg, pr_request *req, pr_bytes *rows)
{
	struct hdr_field *h;
	size_t n;

	req->history_info = rows;
	req->n_history_info = 0;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the request's headers\n");
		return -1;
	}
	n = 0;
	for(h = msg->headers; h != NULL; h = h->next) {
		if(h->type != HDR_OTHER_T || h->name.len != prm_hi_hname.len
				|| cmp_hdrname_str(&h->name, &prm_hi_hname) != 0)
			continue;
		/* one more than the core reads shows it there are too many */
		if(n <= PR_MAX_HISTORY_INFO_ROWS) {
			rows[n].ptr = (const uint8_t *)h->body.s;
			rows[n].len = (h->body.s && h->body.len > 0) ? h->body.len : 0;
		}
		n++;
	}
	req->n_history_info = n;
	if(msg->privacy != NULL && msg->privacy->body.len > 0) {
		req->privacy.ptr = (const uint8_t *)msg->privacy->body.s;
		req->privacy.len = (size_t)msg->privacy->body.len;
	}
	return 0;
}

/* "Name: value\r\n" as a new lump before `anchor`: written at `line`
 * (a buffer of this process, kept until the lump is gone: the lump does
 * not own it, LUMPFLAG_DUPED, and frees only itself), or into a pkg
 * buffer the lump owns (`line` NULL) */
static int prm_hdr_insert(
		struct lump *anchor, const char *name, int nlen, str *val, char *line)
{
	struct lump *l;
	char *buf;
	int len;

	len = nlen + 2 + val->len + CRLF_LEN;
	buf = line;
	if(buf == NULL) {
		buf = (char *)pkg_malloc(len);
		if(buf == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
	}
	memcpy(buf, name, nlen);
	memcpy(buf + nlen, ": ", 2);
	memcpy(buf + nlen + 2, val->s, val->len);
	memcpy(buf + nlen + 2 + val->len, CRLF, CRLF_LEN);
	l = insert_new_lump_before(anchor, buf, len, 0);
	if(l == NULL) {
		if(line == NULL)
			pkg_free(buf);
		return -1;
	}
	if(line != NULL)
		l->flags |= LUMPFLAG_DUPED;
	return 0;
}

/* the stashed values for R-URI `ruri` of message `id` with Call-ID
 * `callid`: 0 found, -1 none */
static int prm_stash_find(
		unsigned int id, str *callid, str *ruri, str *hi, str *div)
{
	int lens[3];
	char *p;
	char *end;

	if(!prm_stash.valid || prm_stash.msg_id != id
			|| prm_stash.callid_len != callid->len
			|| memcmp(prm_stash.buf, callid->s, callid->len) != 0)
		return -1;
	p = prm_stash.buf + prm_stash.callid_len;
	end = prm_stash.buf + prm_stash.len;
	while(p + (int)sizeof(lens) <= end) {
		memcpy(lens, p, sizeof(lens));
		p += sizeof(lens);
		if(lens[0] == ruri->len && memcmp(p, ruri->s, ruri->len) == 0) {
			hi->s = p + lens[0];
			hi->len = lens[1];
			div->s = hi->s + lens[1];
			div->len = lens[2];
			return 0;
		}
		p += lens[0] + lens[1] + lens[2];
	}
	return -1;
}

/* the header lines of a failure round's one branch: this process's
 * buffer, grown as needed and kept (its lumps are freed with the faked
 * request after the failure route, before the next decision of this
 * process) */
static struct
{
	char *buf;
	int size;
} prm_lines;

/* whether a lump of msg still shows text of prm_lines (push_redirect()
 * called twice in one failure route): then the buffer is left alone */
static int prm_lines_in_use(struct sip_msg *msg)
{
	struct lump *t;
	struct lump *l;

	if(prm_lines.buf == NULL)
		return 0;
	for(t = msg->add_rm; t != NULL; t = t->next)
		for(l = t->before; l != NULL; l = l->before)
			if(l->op == LUMP_ADD && l->u.value >= prm_lines.buf
					&& l->u.value < prm_lines.buf + prm_lines.size)
				return 1;
	return 0;
}

/* History-Info value `hi` and Diversion value `div` (either may be empty)
 * as new headers of `msg`, whose R-URI is `ruri` (for log lines); `lines`:
 * 1 to write them into prm_lines (lumps that do not own their text; pkg
 * buffers of their own while msg still has lumps showing prm_lines), 0
 * into pkg buffers of their own */
static void prm_hdr_add(
		struct sip_msg *msg, str *ruri, str *hi, str *div, int lines)
{
	struct lump *end;
	struct lump *at;
	char *hi_line;
	char *div_line;
	char *nbuf;
	int need;

	hi_line = div_line = NULL;
	if(lines && !prm_lines_in_use(msg)) {
		need = (hi->len > 0 ? 12 + 2 + hi->len + CRLF_LEN : 0)
			   + (div->len > 0 ? 9 + 2 + div->len + CRLF_LEN : 0);
		if(need > prm_lines.size) {
			nbuf = (char *)pkg_realloc(prm_lines.buf, need);
			if(nbuf == NULL) {
				PKG_MEM_ERROR;
				return;
			}
			prm_lines.buf = nbuf;
			prm_lines.size = need;
		}
		hi_line = prm_lines.buf;
		div_line = prm_lines.buf
				   + (hi->len > 0 ? 12 + 2 + hi->len + CRLF_LEN : 0);
	}
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("cannot parse the branch's headers\n");
		return;
	}
	end = anchor_lump(msg, msg->unparsed - msg->buf, 0, 0);
	if(end == NULL) {
		LM_ERR("cannot add headers to branch [%.*s]\n", ruri->len, ruri->s);
		return;
	}
	/* a new History-Info row after the request's own (their entries come
	 * first) */
	if(hi->len > 0
			&& prm_hdr_insert(end, "History-Info", 12, hi, hi_line) < 0)
		LM_ERR("cannot add History-Info to branch [%.*s]\n", ruri->len,
				ruri->s);
	/* the most recent diversion first (RFC 5806): before the request's own
	 * Diversion headers */
	if(div->len > 0) {
		at = end;
		if(msg->diversion != NULL)
			at = anchor_lump(msg, msg->diversion->name.s - msg->buf, 0, 0);
		if(at == NULL
				|| prm_hdr_insert(at, "Diversion", 9, div, div_line) < 0)
			LM_ERR("cannot add Diversion to branch [%.*s]\n", ruri->len,
					ruri->s);
	}
}

/* TMCB_REQUEST_FWDED: the values of this branch's R-URI, as headers of
 * this branch alone */
static void prm_hdr_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	struct sip_msg *msg;
	str *ruri;
	str hi;
	str div;

	msg = ps->req;
	if(msg == NULL || msg->callid == NULL)
		return;
	ruri = GET_RURI(msg);
	if(prm_stash_find(msg->id, &msg->callid->body, ruri, &hi, &div) < 0)
		return;
	prm_hdr_add(msg, ruri, &hi, &div, 0);
}

/* whether transaction t has the callback already */
static int prm_hdr_has_cb(struct cell *t)
{
	struct tm_callback *cb;

	for(cb = (struct tm_callback *)t->tmcb_hl.first; cb != NULL;
			cb = cb->next)
		if(cb->callback == prm_hdr_cb)
			return 1;
	return 0;
}

int prm_hdr_keep(struct sip_msg *msg, const pr_decision_view *v,
		struct cell *t, str *callid)
{
	const pr_branch_out *b;
	str ruri;
	str hi;
	str div;
	int lens[3];
	int need;
	char *nbuf;
	char *p;
	size_t i;

	prm_stash.valid = 0;
	/* a failure round with one new branch: its headers as lumps of the
	 * request the failure route relays (tm's faked copy, whose own lumps
	 * go to the branches t_relay() creates in this route and are freed
	 * after it), no callback */
	if(t != NULL && v->n_branches == 1 && is_route_type(FAILURE_ROUTE)) {
		b = &v->branches[0];
		if(b->history_info.len > 0 || b->diversion.len > 0) {
			ruri.s = (char *)b->uri.ptr;
			ruri.len = (int)b->uri.len;
			hi.s = (char *)b->history_info.ptr;
			hi.len = (int)b->history_info.len;
			div.s = (char *)b->diversion.ptr;
			div.len = (int)b->diversion.len;
			prm_hdr_add(msg, &ruri, &hi, &div, 1);
		}
		return 0;
	}
	need = callid->len;
	for(i = 0; i < v->n_branches; i++) {
		b = &v->branches[i];
		if(b->history_info.len > 0 || b->diversion.len > 0)
			need += (int)(sizeof(lens) + b->uri.len + b->history_info.len
						  + b->diversion.len);
	}
	if(need == callid->len)
		return 0;
	if(need > prm_stash.size) {
		nbuf = (char *)pkg_realloc(prm_stash.buf, need);
		if(nbuf == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		prm_stash.buf = nbuf;
		prm_stash.size = need;
	}
	p = prm_stash.buf;
	if(callid->len > 0)
		memcpy(p, callid->s, callid->len);
	p += callid->len;
	for(i = 0; i < v->n_branches; i++) {
		b = &v->branches[i];
		if(b->history_info.len == 0 && b->diversion.len == 0)
			continue;
		lens[0] = (int)b->uri.len;
		lens[1] = (int)b->history_info.len;
		lens[2] = (int)b->diversion.len;
		memcpy(p, lens, sizeof(lens));
		p += sizeof(lens);
		memcpy(p, b->uri.ptr, lens[0]);
		p += lens[0];
		if(lens[1] > 0)
			memcpy(p, b->history_info.ptr, lens[1]);
		p += lens[1];
		if(lens[2] > 0)
			memcpy(p, b->diversion.ptr, lens[2]);
		p += lens[2];
	}
	prm_stash.len = need;
	prm_stash.callid_len = callid->len;
	prm_stash.msg_id = msg->id;
	prm_stash.valid = 1;

	/* one callback per transaction: in a failure route the transaction's
	 * list tells; in a request route (t NULL) tm keeps it on its early
	 * list for the transaction t_relay() creates */
	if(t != NULL) {
		if(prm_hdr_has_cb(t))
			return 0;
	} else if(prm_cb_msg_set && prm_cb_msg_id == msg->id) {
		return 0;
	}
	if(prm_tmb.register_tmcb(
			   msg, t, TMCB_REQUEST_FWDED, prm_hdr_cb, NULL, NULL)
			<= 0) {
		LM_ERR("cannot register the per-branch header callback (Call-ID "
			   "%.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	if(t == NULL) {
		prm_cb_msg_id = msg->id;
		prm_cb_msg_set = 1;
	}
	return 0;
}
