# push_redirect routing in Python (app_python3, KEMI): what
# push-redirect.cfg does, with KSR.push_redirect.push_lookup() and
# push_redirect().  Loaded by push-redirect-kemi.cfg -A WITH_PYTHON
# (modparam("app_python3", "load", ...), cfgengine "python").
#
# KSR.push_redirect.push_lookup() / push_lookup_mode("serial"|"parallel")
#   1: Request-URI (and branches) set, relay it; -1: no target; -2: error
# KSR.push_redirect.push_redirect() / push_redirect_mode(mode)
#   1: new branches appended, relay them; -1: nothing more to try;
#   -2: error or every target refused
#
# A route method ends the routing by returning (app_python3 has no
# KSR.x.exit()).

import KSR


def mod_init():
    """app_python3 calls it once: the object whose methods are the routes."""
    return PushRedirect()


class PushRedirect:
    def child_init(self, rank):
        return 0

    # app_python3 (5.6, 6.0) looks up the reply and onsend routes on every
    # reply and every send, and when the class lacks one it leaves a pending
    # AttributeError behind that breaks the next KSR call (t_is_canceled(),
    # t_relay(), ...): both must exist, even when they do nothing.

    def ksr_reply_route(self, msg):
        """Every reply: nothing to do (tm handles them)."""
        return 1

    def ksr_onsend_route(self, msg):
        """Every request sent: nothing to do."""
        return 1

    def ksr_request_route(self, msg):
        """The request route: Kamailio calls it for every request."""
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.send_reply(483, "Too Many Hops")
            return 1

        if KSR.siputils.has_totag() > 0:
            # in dialog: not a PUSH request, routed as usual
            if KSR.rr.loose_route() > 0 or KSR.is_ACK():
                KSR.tm.t_relay()
                return 1
            KSR.sl.send_reply(404, "Not here")
            return 1

        if KSR.is_REGISTER():
            if KSR.registrar.save("location", 0) < 0:
                KSR.sl.sl_reply_error()
            return 1

        if not KSR.is_myself_ruri():
            KSR.sl.send_reply(403, "Not relaying")
            return 1

        if KSR.is_MESSAGE() or KSR.is_NOTIFY():
            if KSR.push_redirect.push_lookup() < 0:
                KSR.sl.send_reply(404, "Not Found")
                return 1
            KSR.tm.t_on_failure("ksr_failure_push")
            if KSR.tm.t_relay() < 0:
                KSR.sl.sl_reply_error()
            return 1

        if KSR.registrar.lookup("location") < 0:
            KSR.sl.send_reply(404, "Not Found")
            return 1
        KSR.tm.t_relay()
        return 1

    def ksr_failure_push(self, msg):
        """The failure route of a PUSH request (t_on_failure names it)."""
        if KSR.tm.t_is_canceled() > 0:
            return 1
        if KSR.push_redirect.push_redirect() > 0:
            KSR.tm.t_on_failure("ksr_failure_push")
            KSR.tm.t_relay()
        return 1
