/*
 * mod_callconsent's C side for FreeSWITCH 1.10: the application and API registration, the
 * configuration reader, DTMF hooks and the watcher's media bug, and thin wrappers over the
 * FreeSWITCH calls the Rust adapter makes. No policy here: every decision is the runtime's.
 * The module's function table is defined in Rust (a cdylib exports only Rust symbols); its load
 * and shutdown functions are here.
 */
#include <switch.h>

#include "shim.h"

#define CC_STATE_SUBCLASS "callconsent::state"
#define CC_AUDIT_SUBCLASS "callconsent::audit"
#define CC_BUG_NAME "callconsent"

static switch_event_node_t *bridge_node;
static switch_event_node_t *dtmf_node;
/* The module's interface: every watched call holds a read lock on its rwlock, so that `unload`
 * (which try-locks it for writing) is refused while a call could still run the module's hooks. */
static switch_loadable_module_interface_t *cc_module;

/* ---------------- logging, directories ---------------- */

void cc_fs_log(int level, const char *file, int line, const char *func, const char *msg)
{
	switch_log_printf(SWITCH_CHANNEL_ID_LOG, file, func, line, NULL, (switch_log_level_t) level, "%s\n", msg);
}

const char *cc_fs_dir(int which)
{
	switch (which) {
	case CC_FS_DIR_CONF: return SWITCH_GLOBAL_dirs.conf_dir;
	case CC_FS_DIR_LOG: return SWITCH_GLOBAL_dirs.log_dir;
	case CC_FS_DIR_DB: return SWITCH_GLOBAL_dirs.db_dir;
	case CC_FS_DIR_RECORDINGS: return SWITCH_GLOBAL_dirs.recordings_dir;
	case CC_FS_DIR_SOUNDS: return SWITCH_GLOBAL_dirs.sounds_dir;
	default: return "";
	}
}

void cc_fs_global_var(const char *name, void *ctx)
{
	char *v = switch_core_get_variable_dup(name);
	cc_rs_fs_take_text(ctx, v ? v : "");
	switch_safe_free(v);
}

/* ---------------- configuration ---------------- */

static void params(void *ctx, switch_xml_t parent, const char *category, const char *file)
{
	switch_xml_t param;
	int n = 0;

	cc_rs_fs_config_entry(ctx, category, NULL, "", file, 0);
	for (param = switch_xml_child(parent, "param"); param; param = param->next) {
		n++;
		cc_rs_fs_config_entry(ctx, category, switch_xml_attr_soft(param, "name"),
			switch_xml_attr_soft(param, "value"), file, 0);
	}
	(void) n;
}

int cc_fs_config_read(void *ctx)
{
	switch_xml_t xml, cfg, settings, access, profiles, profile;
	const char *file = "callconsent.conf.xml";

	if (!(xml = switch_xml_open_cfg("callconsent.conf", &cfg, NULL))) {
		return -1;
	}
	if ((settings = switch_xml_child(cfg, "settings"))) {
		params(ctx, settings, "general", file);
	}
	/* <access>: who may reach recordings (read by the DPO's tool; checked here). */
	if ((access = switch_xml_child(cfg, "access"))) {
		params(ctx, access, "access", file);
	}
	if ((profiles = switch_xml_child(cfg, "profiles"))) {
		for (profile = switch_xml_child(profiles, "profile"); profile; profile = profile->next) {
			const char *name = switch_xml_attr_soft(profile, "name");
			if (zstr(name)) {
				switch_xml_free(xml);
				return -2;
			}
			params(ctx, profile, name, file);
		}
	}
	switch_xml_free(xml);
	return 0;
}

/* ---------------- sessions ---------------- */

void cc_fs_session_text(cc_session *s, int what, const char *var, void *ctx)
{
	switch_core_session_t *session = (switch_core_session_t *) s;
	switch_channel_t *channel = switch_core_session_get_channel(session);
	const char *v = NULL;

	switch (what) {
	case CC_FS_UUID: v = switch_core_session_get_uuid(session); break;
	case CC_FS_NAME: v = switch_channel_get_name(channel); break;
	case CC_FS_CALLER_NUMBER: {
		switch_caller_profile_t *cp = switch_channel_get_caller_profile(channel);
		v = cp ? cp->caller_id_number : NULL;
		break;
	}
	case CC_FS_VAR: v = var ? switch_channel_get_variable(channel, var) : NULL; break;
	}
	cc_rs_fs_take_text(ctx, v ? v : "");
}

struct play_keys {
	const char *keys;
	char got;
};

static switch_status_t on_play_input(switch_core_session_t *session, void *input, switch_input_type_t itype,
	void *buf, unsigned int buflen)
{
	struct play_keys *p = buf;
	if (itype == SWITCH_INPUT_TYPE_DTMF) {
		switch_dtmf_t *d = input;
		if (p->keys && d->digit && strchr(p->keys, d->digit)) {
			p->got = d->digit;
			return SWITCH_STATUS_BREAK;
		}
	}
	return SWITCH_STATUS_SUCCESS;
}

int cc_fs_play(const char *uuid, const char *file, const char *keys)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	switch_channel_t *channel;
	switch_input_args_t args = { 0 };
	struct play_keys p = { keys, 0 };
	switch_status_t st;
	int rc;

	if (!session) {
		return CC_FS_PLAY_HANGUP;
	}
	channel = switch_core_session_get_channel(session);
	if (!switch_channel_ready(channel)) {
		switch_core_session_rwunlock(session);
		return CC_FS_PLAY_HANGUP;
	}
	args.input_callback = on_play_input;
	args.buf = &p;
	args.buflen = sizeof(p);
	/* Prompts keep FreeSWITCH's own time (issue 23). Without a timer, playback waits for each of
	 * the caller's RTP packets (up to 5 s for each missing one): a caller whose phone goes quiet
	 * after the opt-out key (silence suppression, or nothing more to send) held the confirmation,
	 * and so the application, until hangup, and the call never reached the agent. */
	{
		const char *timer = switch_channel_get_variable(channel, "timer_name");
		int own_timer = zstr(timer);
		if (own_timer) {
			switch_channel_set_variable(channel, "timer_name", "soft");
		}
		st = switch_ivr_play_file(session, NULL, file, &args);
		if (own_timer) {
			switch_channel_set_variable(channel, "timer_name", NULL);
		}
	}
	if (p.got) {
		rc = p.got;
	} else if (!switch_channel_ready(channel)) {
		rc = CC_FS_PLAY_HANGUP;
	} else if (st == SWITCH_STATUS_NOTFOUND || st == SWITCH_STATUS_GENERR || st == SWITCH_STATUS_FALSE) {
		rc = CC_FS_PLAY_MISSING;
	} else {
		rc = CC_FS_PLAY_DONE;
	}
	switch_core_session_rwunlock(session);
	return rc;
}

/* ---------------- the watcher: DTMF hooks and a media bug ---------------- */

struct cc_bug {
	void *call;
	const int *ticks;
};

static switch_status_t on_recv_dtmf(switch_core_session_t *session, const switch_dtmf_t *dtmf, switch_dtmf_direction_t direction)
{
	int a = cc_rs_fs_dtmf(switch_core_session_get_uuid(session), CC_FS_DIR_RECV, dtmf->digit, dtmf->duration / 8);
	return a == CC_FS_DROP ? SWITCH_STATUS_FALSE : SWITCH_STATUS_SUCCESS;
}

/* Whether the caller's bridge partner is a loopback leg (an agent reached through loopback/). */
static int partner_is_loopback(switch_core_session_t *session)
{
	const char *peer = switch_channel_get_variable(switch_core_session_get_channel(session), SWITCH_BRIDGE_CHANNEL_VARIABLE);
	return peer && !strncmp(peer, "loopback/", 9);
}

/* Keys an application sent on a loopback's far side are reported by the DTMF event (on_dtmf_event),
 * whether or not they also come here: handled there only, never twice. */
static int relayed_by_loopback(switch_core_session_t *session, const switch_dtmf_t *dtmf)
{
	return (dtmf->source == SWITCH_DTMF_APP || dtmf->source == SWITCH_DTMF_UNKNOWN) && partner_is_loopback(session);
}

/* Runs on the thread that sends: the agent's bridge thread for the agent's keys. */
static switch_status_t on_send_dtmf(switch_core_session_t *session, const switch_dtmf_t *dtmf, switch_dtmf_direction_t direction)
{
	int a;
	if (relayed_by_loopback(session, dtmf)) {
		return SWITCH_STATUS_SUCCESS;
	}
	a = cc_rs_fs_dtmf(switch_core_session_get_uuid(session), CC_FS_DIR_SEND, dtmf->digit, dtmf->duration / 8);
	return a == CC_FS_DROP ? SWITCH_STATUS_FALSE : SWITCH_STATUS_SUCCESS;
}

static switch_bool_t on_bug(switch_media_bug_t *bug, void *data, switch_abc_type_t type)
{
	struct cc_bug *b = data;

	switch (type) {
	case SWITCH_ABC_TYPE_READ_PING:
		if (b->call && __atomic_load_n(b->ticks, __ATOMIC_RELAXED)) {
			cc_rs_fs_tick(b->call);
		}
		break;
	case SWITCH_ABC_TYPE_CLOSE:
		if (b->call) {
			void *call = b->call;
			b->call = NULL;
			cc_rs_fs_close(call);
			if (cc_module && cc_module->rwlock) {
				switch_thread_rwlock_unlock(cc_module->rwlock);
			}
		}
		break;
	default:
		break;
	}
	return SWITCH_TRUE;
}

int cc_fs_watch(const char *uuid, void *call, const int *ticks)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	switch_media_bug_t *bug = NULL;
	struct cc_bug *b;
	int rc = -1;

	if (!session) {
		return -1;
	}
	b = switch_core_session_alloc(session, sizeof(*b));
	b->call = call;
	b->ticks = ticks;
	if (cc_module && cc_module->rwlock) {
		switch_thread_rwlock_rdlock(cc_module->rwlock);
	}
	if (switch_core_media_bug_add(session, CC_BUG_NAME, NULL, on_bug, b, 0,
			SMBF_READ_PING | SMBF_NO_PAUSE, &bug) != SWITCH_STATUS_SUCCESS) {
		if (cc_module && cc_module->rwlock) {
			switch_thread_rwlock_unlock(cc_module->rwlock);
		}
	} else {
		switch_core_event_hook_add_recv_dtmf(session, on_recv_dtmf);
		switch_core_event_hook_add_send_dtmf(session, on_send_dtmf);
		rc = 0;
	}
	switch_core_session_rwunlock(session);
	return rc;
}

/* ---------------- sessions by uuid ---------------- */

int cc_fs_exists(const char *uuid)
{
	return switch_ivr_uuid_exists(uuid) ? 1 : 0;
}

int cc_fs_setvar(const char *uuid, const char *name, const char *value)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	if (!session) {
		return -1;
	}
	switch_channel_set_variable(switch_core_session_get_channel(session), name, value);
	switch_core_session_rwunlock(session);
	return 0;
}

void cc_fs_getvar(const char *uuid, const char *name, void *ctx)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	const char *v = NULL;
	char *copy = NULL;

	if (session) {
		v = switch_channel_get_variable(switch_core_session_get_channel(session), name);
		copy = v ? strdup(v) : NULL;
		switch_core_session_rwunlock(session);
	}
	cc_rs_fs_take_text(ctx, copy ? copy : "");
	free(copy);
}

void cc_fs_partner(const char *uuid, int what, void *ctx)
{
	switch_core_session_t *session = switch_core_session_locate(uuid), *partner = NULL;
	char *out = NULL;

	if (session) {
		if (switch_core_session_get_partner(session, &partner) == SWITCH_STATUS_SUCCESS && partner) {
			out = strdup(what == CC_FS_UUID ? switch_core_session_get_uuid(partner)
				: switch_channel_get_name(switch_core_session_get_channel(partner)));
			switch_core_session_rwunlock(partner);
		}
		switch_core_session_rwunlock(session);
	}
	cc_rs_fs_take_text(ctx, out ? out : "");
	free(out);
}

int cc_fs_record_start(const char *uuid, const char *file)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	int rc = -1;
	if (session) {
		rc = switch_ivr_record_session(session, file, 0, NULL) == SWITCH_STATUS_SUCCESS ? 0 : -1;
		switch_core_session_rwunlock(session);
	}
	return rc;
}

int cc_fs_record_stop(const char *uuid, const char *file)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	int rc = -1;
	if (session) {
		rc = switch_ivr_stop_record_session(session, file) == SWITCH_STATUS_SUCCESS ? 0 : -1;
		switch_core_session_rwunlock(session);
	}
	return rc;
}

int cc_fs_record_mask(const char *uuid, const char *file, int on)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	int rc = -1;
	if (session) {
		rc = switch_ivr_record_session_mask(session, file, on ? SWITCH_TRUE : SWITCH_FALSE) == SWITCH_STATUS_SUCCESS ? 0 : -1;
		switch_core_session_rwunlock(session);
	}
	return rc;
}

int cc_fs_broadcast(const char *uuid, const char *file)
{
	return switch_ivr_broadcast(uuid, file, SMF_ECHO_ALEG) == SWITCH_STATUS_SUCCESS ? 0 : -1;
}

int cc_fs_send_digits(const char *uuid, const char *digits)
{
	switch_core_session_t *session = switch_core_session_locate(uuid);
	const char *p;
	if (!session) {
		return -1;
	}
	for (p = digits; p && *p; p++) {
		/* Past every DTMF hook: these are keys the module held back and now passes on. */
		switch_dtmf_t d = { *p, switch_core_default_dtmf_duration(0), DTMF_FLAG_SKIP_PROCESS, SWITCH_DTMF_APP };
		if (is_dtmf(*p)) {
			switch_core_session_send_dtmf(session, &d);
		}
	}
	switch_core_session_rwunlock(session);
	return 0;
}

/* ---------------- events ---------------- */

void cc_fs_event(const char *subclass, const char *uuid, const char *headers)
{
	switch_event_t *event = NULL;
	char *copy, *line, *next;

	if (switch_event_create_subclass(&event, SWITCH_EVENT_CUSTOM, subclass) != SWITCH_STATUS_SUCCESS) {
		return;
	}
	if (uuid && *uuid) {
		switch_core_session_t *session = switch_core_session_locate(uuid);
		if (session) {
			switch_channel_event_set_data(switch_core_session_get_channel(session), event);
			switch_core_session_rwunlock(session);
		}
	}
	copy = strdup(headers ? headers : "");
	for (line = copy; line && *line; line = next) {
		char *colon;
		next = strchr(line, '\n');
		if (next) {
			*next++ = '\0';
		}
		if ((colon = strstr(line, ": "))) {
			*colon = '\0';
			switch_event_add_header_string(event, SWITCH_STACK_BOTTOM, line, colon + 2);
		}
	}
	free(copy);
	switch_event_fire(&event);
}

/* A key leaving a channel's queue (SWITCH_EVENT_DTMF, fired by switch_channel_dequeue_dtmf on the
 * thread that forwards it). An agent on loopback/ whose far side runs send_dtmf: FreeSWITCH marks
 * those keys DTMF_FLAG_SKIP_PROCESS, so they cross the loopback pair and the bridge to the caller
 * past every DTMF hook; this event is the only place they are seen (issue 23). Keys from RTP,
 * signalling or audio reach on_send_dtmf and are left to it. */
static void on_dtmf_event(switch_event_t *event)
{
	const char *name = switch_event_get_header(event, "Channel-Name");
	const char *uuid = switch_event_get_header(event, "Unique-ID");
	const char *digit = switch_event_get_header(event, "DTMF-Digit");
	const char *source = switch_event_get_header(event, "DTMF-Source");
	switch_core_session_t *session, *partner = NULL;

	if (!name || strncmp(name, "loopback/", 9) || !uuid || !digit || !*digit || !source
		|| (strcmp(source, "APP") && strcmp(source, "UNKNOWN"))) {
		return;
	}
	if (!(session = switch_core_session_locate(uuid))) {
		return;
	}
	if (switch_core_session_get_partner(session, &partner) == SWITCH_STATUS_SUCCESS && partner) {
		cc_rs_fs_agent_relayed(switch_core_session_get_uuid(partner), *digit);
		switch_core_session_rwunlock(partner);
	}
	switch_core_session_rwunlock(session);
}

static void on_bridge(switch_event_t *event)
{
	const char *a = switch_event_get_header(event, "Bridge-A-Unique-ID");
	const char *b = switch_event_get_header(event, "Bridge-B-Unique-ID");
	if (a) {
		cc_rs_fs_bridged(a);
	}
	if (b) {
		cc_rs_fs_bridged(b);
	}
}

/* ---------------- application, API, module ---------------- */

SWITCH_STANDARD_APP(callconsent_app)
{
	cc_rs_fs_exec((cc_session *) session, data ? data : "");
}

static void stream_line(void *ctx, const char *line)
{
	switch_stream_handle_t *stream = ctx;
	stream->write_function(stream, "%s\n", line);
}

/* The digits of a secure entry, as they are: ${callconsent(secure_digits ${uuid})} expands to
 * them without a line end. */
static void stream_text(void *ctx, const char *line)
{
	switch_stream_handle_t *stream = ctx;
	stream->write_function(stream, "%s", line);
}

SWITCH_STANDARD_API(callconsent_api)
{
	const char *c = cmd ? cmd : "";
	cc_rs_fs_api(c, session ? switch_core_session_get_uuid(session) : "",
		strncmp(c, "secure_digits ", 14) ? stream_line : stream_text, stream);
	return SWITCH_STATUS_SUCCESS;
}

#define CC_API_SYNTAX "pause|resume|delete|secure|status|secure_digits <uuid> | show calls|profiles|status | reload"

switch_status_t cc_fs_module_load(switch_loadable_module_interface_t **module_interface, switch_memory_pool_t *pool);
switch_status_t cc_fs_module_shutdown(void);

switch_status_t cc_fs_module_load(switch_loadable_module_interface_t **module_interface, switch_memory_pool_t *pool)
{
	switch_application_interface_t *app_interface;
	switch_api_interface_t *api_interface;

	if (switch_event_reserve_subclass(CC_STATE_SUBCLASS) != SWITCH_STATUS_SUCCESS
		|| switch_event_reserve_subclass(CC_AUDIT_SUBCLASS) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "callconsent: cannot reserve the event subclasses\n");
		return SWITCH_STATUS_TERM;
	}
	if (cc_rs_fs_load() != 0) {
		switch_event_free_subclass(CC_STATE_SUBCLASS);
		switch_event_free_subclass(CC_AUDIT_SUBCLASS);
		return SWITCH_STATUS_FALSE;
	}
	*module_interface = switch_loadable_module_create_module_interface(pool, "mod_callconsent");
	cc_module = *module_interface;
	SWITCH_ADD_APP(app_interface, "callconsent", "Recording consent: notice, refusal key, agent codes",
		"Plays the recording notice of PROFILE on the caller's leg, draws whether the call is recorded, "
		"and watches both legs' keys for the rest of the call. Sets callconsent_status to RECORDING, "
		"NOT_SELECTED, OPTED_OUT or ERROR. Inbound: on the caller's leg before bridge; outbound: on the "
		"called leg once it answers (group_confirm_key=exec, see dialplan/freeswitch/callconsent.xml).",
		callconsent_app, "<profile>[,<dialled number>]", SAF_NONE);
	SWITCH_ADD_API(api_interface, "callconsent", "callconsent: controls and state", callconsent_api, CC_API_SYNTAX);
	switch_console_set_complete("add callconsent pause ::console::list_uuid");
	switch_console_set_complete("add callconsent resume ::console::list_uuid");
	switch_console_set_complete("add callconsent delete ::console::list_uuid");
	switch_console_set_complete("add callconsent status ::console::list_uuid");
	switch_console_set_complete("add callconsent show calls");
	switch_console_set_complete("add callconsent show profiles");
	switch_console_set_complete("add callconsent show status");
	switch_console_set_complete("add callconsent reload");
	if (switch_event_bind_removable("mod_callconsent", SWITCH_EVENT_CHANNEL_BRIDGE, SWITCH_EVENT_SUBCLASS_ANY,
			on_bridge, NULL, &bridge_node) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "callconsent: cannot watch bridges; recordings cannot start\n");
	}
	if (switch_event_bind_removable("mod_callconsent", SWITCH_EVENT_DTMF, SWITCH_EVENT_SUBCLASS_ANY,
			on_dtmf_event, NULL, &dtmf_node) != SWITCH_STATUS_SUCCESS) {
		switch_log_printf(SWITCH_CHANNEL_LOG, SWITCH_LOG_ERROR, "callconsent: cannot watch DTMF events; agents on loopback/ cannot use their codes\n");
	}
	return SWITCH_STATUS_SUCCESS;
}

switch_status_t cc_fs_module_shutdown(void)
{
	cc_module = NULL;
	switch_event_unbind(&bridge_node);
	switch_event_unbind(&dtmf_node);
	switch_console_set_complete("del callconsent");
	cc_rs_fs_unload();
	switch_event_free_subclass(CC_STATE_SUBCLASS);
	switch_event_free_subclass(CC_AUDIT_SUBCLASS);
	return SWITCH_STATUS_SUCCESS;
}
