/*
 * push_redirect module - per-branch headers (History-Info, Diversion)
 *
 * This file is part of push_redirect, a Kamailio module.
 *
 * The core writes, for each new branch, the History-Info (RFC 7044) and
 * Diversion (RFC 5806) values that branch carries: each branch its own
 * path's entries.  A header lump added in a request or failure route
 * would go to every branch t_relay() creates, so the values are kept with
 * the transaction (an XAVP per branch: its R-URI and its values, shared
 * memory, moved into the transaction when t_relay() creates it), and a
 * TMCB_REQUEST_FWDED callback of the transaction adds them: tm runs it in
 * prepare_new_uac() once per new branch, with the branch's R-URI in the
 * message and the lump lists duplicated for that branch alone (they are
 * freed once its buffer is built).  The operator needs no branch_route,
 * and one registered callback serves push_lookup()'s branches and every
 * failure round's.  Nothing here decides: the core made the values.
 */

#include <string.h>

#include "core/data_lump.h"
#include "core/dprint.h"
#include "core/mem/mem.h"
#include "core/parser/msg_parser.h"
#include "core/parser/parse_hname2.h"
#include "core/strutils.h"
#include "core/ut.h"
#include "core/xavp.h"
#include "modules/tm/t_hooks.h"

#include "push_redirect_hdr.h"

/* one XAVP per branch with values: u (its R-URI), h (History-Info
 * value), d (Diversion value) */
static str prm_hdr_name = str_init("push_redirect_hdr");
static str prm_hdr_u = str_init("u");
static str prm_hdr_h = str_init("h");
static str prm_hdr_d = str_init("d");
/* set once the transaction's callback is registered */
static str prm_hdr_cb_name = str_init("push_redirect_hdrcb");

static str prm_hi_hname = str_init("History-Info");

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

/* "Name: value\r\n" as a new lump before `anchor` */
static int prm_hdr_insert(
		struct lump *anchor, const char *name, int nlen, str *val)
{
	char *buf;
	int len;

	len = nlen + 2 + val->len + CRLF_LEN;
	buf = (char *)pkg_malloc(len);
	if(buf == NULL) {
		PKG_MEM_ERROR;
		return -1;
	}
	memcpy(buf, name, nlen);
	memcpy(buf + nlen, ": ", 2);
	memcpy(buf + nlen + 2, val->s, val->len);
	memcpy(buf + nlen + 2 + val->len, CRLF, CRLF_LEN);
	if(insert_new_lump_before(anchor, buf, len, 0) == NULL) {
		pkg_free(buf);
		return -1;
	}
	return 0;
}

/* TMCB_REQUEST_FWDED: the values kept for this branch's R-URI, as
 * headers of this branch alone */
static void prm_hdr_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	struct sip_msg *msg;
	sr_xavp_t *x;
	sr_xavp_t *u;
	sr_xavp_t *v;
	struct lump *end;
	struct lump *at;
	str *ruri;

	msg = ps->req;
	if(msg == NULL)
		return;
	ruri = GET_RURI(msg);
	for(x = xavp_get(&prm_hdr_name, NULL); x != NULL; x = xavp_get_next(x)) {
		if(x->val.type != SR_XTYPE_XAVP)
			continue;
		u = xavp_get(&prm_hdr_u, x->val.v.xavp);
		if(u == NULL || u->val.type != SR_XTYPE_STR
				|| u->val.v.s.len != ruri->len
				|| memcmp(u->val.v.s.s, ruri->s, ruri->len) != 0)
			continue;
		if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
			LM_ERR("cannot parse the branch's headers\n");
			return;
		}
		end = anchor_lump(msg, msg->unparsed - msg->buf, 0, 0);
		if(end == NULL) {
			LM_ERR("cannot add headers to branch [%.*s]\n", ruri->len,
					ruri->s);
			return;
		}
		/* a new History-Info row after the request's own (their entries
		 * come first) */
		v = xavp_get(&prm_hdr_h, x->val.v.xavp);
		if(v != NULL && v->val.type == SR_XTYPE_STR && v->val.v.s.len > 0
				&& prm_hdr_insert(end, "History-Info", 12, &v->val.v.s)
						   < 0)
			LM_ERR("cannot add History-Info to branch [%.*s]\n",
					ruri->len, ruri->s);
		/* the most recent diversion first (RFC 5806): before the
		 * request's own Diversion headers */
		v = xavp_get(&prm_hdr_d, x->val.v.xavp);
		if(v != NULL && v->val.type == SR_XTYPE_STR && v->val.v.s.len > 0) {
			at = end;
			if(msg->diversion != NULL)
				at = anchor_lump(msg, msg->diversion->name.s - msg->buf, 0, 0);
			if(at == NULL
					|| prm_hdr_insert(at, "Diversion", 9, &v->val.v.s) < 0)
				LM_ERR("cannot add Diversion to branch [%.*s]\n", ruri->len,
						ruri->s);
		}
		return;
	}
}

/* a string field of a branch's XAVP (empty: none) */
static int prm_hdr_field(str *name, pr_bytes b, sr_xavp_t **row)
{
	sr_xval_t val;

	if(b.len == 0)
		return 0;
	memset(&val, 0, sizeof(val));
	val.type = SR_XTYPE_STR;
	val.v.s.s = (char *)b.ptr;
	val.v.s.len = (int)b.len;
	return (xavp_add_value(name, &val, row) == NULL) ? -1 : 0;
}

int prm_hdr_keep(struct sip_msg *msg, const pr_decision_view *v,
		struct cell *t, str *callid)
{
	sr_xval_t val;
	sr_xavp_t *row;
	size_t i;
	int any;

	/* the previous round's branches are all sent */
	if(xavp_get(&prm_hdr_name, NULL) != NULL)
		xavp_rm_by_name(&prm_hdr_name, 1, NULL);
	any = 0;
	for(i = 0; i < v->n_branches; i++) {
		const pr_branch_out *b = &v->branches[i];
		if(b->history_info.len == 0 && b->diversion.len == 0)
			continue;
		row = NULL;
		if(prm_hdr_field(&prm_hdr_u, b->uri, &row) < 0
				|| prm_hdr_field(&prm_hdr_h, b->history_info, &row) < 0
				|| prm_hdr_field(&prm_hdr_d, b->diversion, &row) < 0)
			goto error;
		memset(&val, 0, sizeof(val));
		val.type = SR_XTYPE_XAVP;
		val.v.xavp = row;
		if(xavp_add_value(&prm_hdr_name, &val, NULL) == NULL)
			goto error;
		any = 1;
	}
	if(!any || xavp_get(&prm_hdr_cb_name, NULL) != NULL)
		return 0;
	/* t NULL (request route): tm keeps the callback for the transaction
	 * t_relay() creates */
	if(prm_tmb.register_tmcb(
			   msg, t, TMCB_REQUEST_FWDED, prm_hdr_cb, NULL, NULL)
			<= 0) {
		LM_ERR("cannot register the per-branch header callback (Call-ID "
			   "%.*s)\n",
				callid->len, ZSW(callid->s));
		return -1;
	}
	memset(&val, 0, sizeof(val));
	val.type = SR_XTYPE_INT;
	val.v.i = 1;
	if(xavp_add_value(&prm_hdr_cb_name, &val, NULL) == NULL) {
		LM_ERR("cannot mark the transaction (Call-ID %.*s)\n", callid->len,
				ZSW(callid->s));
		return -1;
	}
	return 0;

error:
	if(row != NULL)
		xavp_destroy_list(&row);
	LM_ERR("cannot keep the branch headers with the transaction (Call-ID "
		   "%.*s)\n",
			callid->len, ZSW(callid->s));
	return -1;
}
