-- push_redirect routing in Lua (app_lua, KEMI): what push-redirect.cfg
-- does, with KSR.push_redirect.push_lookup() and push_redirect().
-- Loaded by push-redirect-kemi.cfg (modparam("app_lua", "load", ...),
-- cfgengine "lua").
--
-- KSR.push_redirect.push_lookup() / push_lookup_mode("serial"|"parallel")
--   1: Request-URI (and branches) set, relay it; -1: no target; -2: error
-- KSR.push_redirect.push_redirect() / push_redirect_mode(mode)
--   1: new branches appended, relay them; -1: nothing more to try;
--   -2: error or every target refused

-- the request route: Kamailio calls it for every request
function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end

	if KSR.siputils.has_totag() > 0 then
		-- in dialog: not a PUSH request, routed as usual
		if KSR.rr.loose_route() > 0 or KSR.is_ACK() then
			KSR.tm.t_relay()
			KSR.x.exit()
		end
		KSR.sl.send_reply(404, "Not here")
		KSR.x.exit()
	end

	if KSR.is_REGISTER() then
		if KSR.registrar.save("location", 0) < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end

	if not KSR.is_myself_ruri() then
		KSR.sl.send_reply(403, "Not relaying")
		KSR.x.exit()
	end

	if KSR.is_MESSAGE() or KSR.is_NOTIFY() then
		if KSR.push_redirect.push_lookup() < 0 then
			KSR.sl.send_reply(404, "Not Found")
			KSR.x.exit()
		end
		KSR.tm.t_on_failure("ksr_failure_push")
		if KSR.tm.t_relay() < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end

	if KSR.registrar.lookup("location") < 0 then
		KSR.sl.send_reply(404, "Not Found")
		KSR.x.exit()
	end
	KSR.tm.t_relay()
end

-- the failure route of a PUSH request (t_on_failure names it)
function ksr_failure_push()
	if KSR.tm.t_is_canceled() > 0 then
		return 1
	end
	if KSR.push_redirect.push_redirect() > 0 then
		KSR.tm.t_on_failure("ksr_failure_push")
		KSR.tm.t_relay()
	end
	return 1
end
