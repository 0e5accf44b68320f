/*
 * res_callconsent: the C side. Asterisk's own macros (AST_MODULE_INFO, locking, ao2 refs,
 * ast_log) live here; policy lives in Rust. Every function here is short and C-shaped.
 */
#include "asterisk.h"

#include <string.h>

#include "asterisk/module.h"
#include "asterisk/channel.h"
#include "asterisk/pbx.h"
#include "asterisk/app.h"
#include "asterisk/file.h"
#include "asterisk/logger.h"
#include "asterisk/config.h"
#include "asterisk/paths.h"
#include "asterisk/framehook.h"
#include "asterisk/frame.h"
#include "asterisk/audiohook.h"
#include "asterisk/mixmonitor.h"
#include "asterisk/bridge.h"
#include "asterisk/bridge_channel.h"
#include "asterisk/bridge_features.h"
#include "asterisk/indications.h"
#include "asterisk/manager.h"
#include "asterisk/cli.h"
#include "asterisk/utils.h"
#include "asterisk/strings.h"
#include "asterisk/core_local.h"

#include "shim.h"

#define CC_SRC "res_callconsent"

static struct ast_channel *chan_of(cc_chan *c) { return (struct ast_channel *) c; }

/* ---------------- logging and paths ---------------- */

void cc_log(int level, const char *file, int line, const char *func, const char *msg)
{
	ast_log(level, file, line, func, "%s\n", msg);
}

const char *cc_ast_config_dir(void) { return ast_config_AST_CONFIG_DIR; }
const char *cc_ast_spool_dir(void) { return ast_config_AST_SPOOL_DIR; }
const char *cc_ast_log_dir(void) { return ast_config_AST_LOG_DIR; }
const char *cc_ast_var_dir(void) { return ast_config_AST_VAR_DIR; }

/* ---------------- configuration ---------------- */

int cc_config_read(const char *filename, void *ctx)
{
	struct ast_flags flags = { CONFIG_FLAG_NOCACHE };
	struct ast_config *cfg = ast_config_load2(filename, "res_callconsent", flags);
	const char *cat = NULL;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", ast_config_AST_CONFIG_DIR, filename);
	if (!cfg) {
		return CC_CONFIG_MISSING;
	}
	if (cfg == CONFIG_STATUS_FILEINVALID) {
		return CC_CONFIG_INVALID;
	}
	while ((cat = ast_category_browse(cfg, cat))) {
		struct ast_variable *v;
		cc_rs_config_entry(ctx, cat, NULL, NULL, path, 0);
		for (v = ast_variable_browse(cfg, cat); v; v = v->next) {
			/* v->file is set only for #included files. */
			cc_rs_config_entry(ctx, cat, v->name, v->value, !ast_strlen_zero(v->file) ? v->file : path, v->lineno);
		}
	}
	ast_config_destroy(cfg);
	return CC_CONFIG_OK;
}

/* ---------------- channels ---------------- */

const char *cc_chan_name(cc_chan *c) { return ast_channel_name(chan_of(c)); }
const char *cc_chan_uniqueid(cc_chan *c) { return ast_channel_uniqueid(chan_of(c)); }
const char *cc_chan_linkedid(cc_chan *c) { return ast_channel_linkedid(chan_of(c)); }

void cc_chan_getvar(cc_chan *c, const char *name, void *ctx)
{
	const char *v;
	ast_channel_lock(chan_of(c));
	v = pbx_builtin_getvar_helper(chan_of(c), name);
	cc_rs_take_text(ctx, v ? v : "");
	ast_channel_unlock(chan_of(c));
}

int cc_chan_setvar(cc_chan *c, const char *name, const char *value)
{
	return pbx_builtin_setvar_helper(chan_of(c), name, value);
}

void cc_chan_ref(cc_chan *c) { ast_channel_ref(chan_of(c)); }
void cc_chan_unref(cc_chan *c) { ast_channel_unref(chan_of(c)); }

cc_chan *cc_chan_get_by_name(const char *name)
{
	return (cc_chan *) ast_channel_get_by_name(name);
}

void cc_chan_caller_number(cc_chan *c, void *ctx)
{
	struct ast_party_caller *caller;
	ast_channel_lock(chan_of(c));
	caller = ast_channel_caller(chan_of(c));
	cc_rs_take_text(ctx, caller->id.number.valid && caller->id.number.str ? caller->id.number.str : "");
	ast_channel_unlock(chan_of(c));
}

int cc_sound_exists(const char *file, const char *language)
{
	return ast_fileexists(file, NULL, language) > 0;
}

int cc_stream_and_wait(cc_chan *c, const char *file, const char *digits)
{
	int res;
	if (!cc_sound_exists(file, ast_channel_language(chan_of(c)))) {
		return CC_STREAM_MISSING;
	}
	res = ast_stream_and_wait(chan_of(c), file, digits);
	if (res < 0) {
		return CC_STREAM_HANGUP;
	}
	return res;
}

/* ---------------- MixMonitor ---------------- */

int cc_mixmonitor_start(cc_chan *c, const char *file, const char *options)
{
	return ast_start_mixmonitor(chan_of(c), file, options);
}

int cc_mixmonitor_stop(cc_chan *c, const char *mixmon_id)
{
	return ast_stop_mixmonitor(chan_of(c), (mixmon_id && *mixmon_id) ? mixmon_id : NULL);
}

int cc_mixmonitor_mute(cc_chan *c, int mute)
{
	return ast_audiohook_set_mute_all(chan_of(c), "MixMonitor",
		AST_AUDIOHOOK_MUTE_READ | AST_AUDIOHOOK_MUTE_WRITE, mute ? 0 : 1);
}

/* ---------------- framehook ---------------- */

struct cc_hook {
	void *call;                   /* the Rust call, handed back on every event */
	const int *ticks;             /* whether voice frames go to Rust as clock ticks (Rust's) */
};

static struct ast_frame *hook_event(struct ast_channel *chan, struct ast_frame *f,
	enum ast_framehook_event event, void *data)
{
	struct cc_hook *h = data;
	int kind, dir, answer;

	if (!f || (event != AST_FRAMEHOOK_EVENT_READ && event != AST_FRAMEHOOK_EVENT_WRITE)) {
		return f;
	}
	switch (f->frametype) {
	case AST_FRAME_DTMF_BEGIN: kind = CC_FRAME_DTMF_BEGIN; break;
	case AST_FRAME_DTMF_END: kind = CC_FRAME_DTMF_END; break;
	case AST_FRAME_VOICE: kind = CC_FRAME_VOICE; break;
	default: return f;
	}
	if (kind == CC_FRAME_VOICE && !__atomic_load_n(h->ticks, __ATOMIC_RELAXED)) {
		return f;
	}
	if (f->src && !strcmp(f->src, CC_SRC)) {
		return f;
	}
	dir = event == AST_FRAMEHOOK_EVENT_READ ? CC_DIR_READ : CC_DIR_WRITE;
	answer = cc_rs_frame(h->call, (cc_chan *) chan, dir, kind, f->subclass.integer,
		kind == CC_FRAME_DTMF_END ? f->len : 0);
	if (!(answer & CC_DROP)) {
		return f;
	}
	if (event == AST_FRAMEHOOK_EVENT_READ) {
		/* __ast_read hands us ownership of the frame. */
		ast_frfree(f);
		return &ast_null_frame;
	}
	/* ast_write's caller owns the frame and frees it: returning NULL drops it without a free. */
	return NULL;
}

static int hook_consume(void *data, enum ast_frame_type type)
{
	return type == AST_FRAME_DTMF_BEGIN || type == AST_FRAME_DTMF_END || type == AST_FRAME_VOICE;
}

static void hook_destroy(void *data)
{
	struct cc_hook *h = data;
	cc_rs_hook_destroy(h->call);
	ast_free(h);
	ast_module_unref(AST_MODULE_SELF);
}

int cc_hook_attach(cc_chan *c, void *call, const int *ticks)
{
	struct cc_hook *h = ast_calloc(1, sizeof(*h));
	struct ast_framehook_interface iface = {
		.version = AST_FRAMEHOOK_INTERFACE_VERSION,
		.event_cb = hook_event,
		.destroy_cb = hook_destroy,
		.consume_cb = hook_consume,
	};
	int id;

	if (!h) {
		return -1;
	}
	h->call = call;
	h->ticks = ticks;
	iface.data = h;
	/* Calls in progress keep the module loaded: its code runs on their frames. */
	ast_module_ref(AST_MODULE_SELF);
	ast_channel_lock(chan_of(c));
	id = ast_framehook_attach(chan_of(c), &iface);
	ast_channel_unlock(chan_of(c));
	if (id < 0) {
		ast_free(h);
		ast_module_unref(AST_MODULE_SELF);
	}
	return id;
}

static int join_hook(struct ast_bridge_channel *bc, void *pvt)
{
	cc_rs_joined((const char *) pvt, (cc_chan *) bc->chan);
	return 0; /* keep the hook: a transfer joins another bridge */
}

int cc_watch_bridges(cc_chan *c, const char *uniqueid)
{
	struct ast_bridge_features *features = ast_bridge_features_new();
	char *id = ast_strdup(uniqueid);
	int res = -1;

	if (features && id) {
		if (!ast_bridge_join_hook(features, join_hook, id, ast_free_ptr, 0)) {
			id = NULL; /* owned by the hook now */
			ast_channel_lock(chan_of(c));
			res = ast_channel_feature_hooks_append(chan_of(c), features);
			ast_channel_unlock(chan_of(c));
		}
	}
	ast_free(id);
	if (features) {
		ast_bridge_features_destroy(features);
	}
	return res;
}

cc_chan *cc_chan_bridge_peer(cc_chan *c)
{
	return (cc_chan *) ast_channel_bridge_peer(chan_of(c));
}

cc_chan *cc_chan_local_peer(cc_chan *c)
{
	return (cc_chan *) ast_local_get_peer(chan_of(c));
}

/* ---------------- prompts and tones while bridged ---------------- */

/* The channel's bridge channel (a reference), or NULL when it is not bridged. */
static struct ast_bridge_channel *bridge_channel_of(struct ast_channel *chan)
{
	struct ast_bridge_channel *bc;

	ast_channel_lock(chan);
	bc = ast_channel_get_bridge_channel(chan);
	ast_channel_unlock(chan);
	return bc;
}

int cc_play_to_self(cc_chan *c, const char *file)
{
	struct ast_bridge_channel *bc = bridge_channel_of(chan_of(c));
	int res;

	if (!bc) {
		return -1;
	}
	res = ast_bridge_channel_queue_playfile(bc, NULL, file, NULL);
	ao2_ref(bc, -1);
	return res;
}

int cc_run_gosub(cc_chan *c, const char *target)
{
	struct ast_bridge_channel *bc = bridge_channel_of(chan_of(c));
	int res;

	if (!bc) {
		return -1;
	}
	/* The bridge channel's thread runs it (ast_bridge_channel_run_app: Gosub is ast_app_exec_sub). */
	res = ast_bridge_channel_queue_app(bc, "Gosub", target, NULL);
	ao2_ref(bc, -1);
	return res;
}

/* Sum of the durations of a tone list such as "950/200,0/100,950/200". */
static int tones_ms(const char *spec)
{
	int total = 0;
	const char *p = spec;
	while (p && *p) {
		const char *slash = strchr(p, '/');
		const char *comma = strchr(p, ',');
		if (slash && (!comma || slash < comma)) {
			total += atoi(slash + 1);
		}
		p = comma ? comma + 1 : NULL;
	}
	return total;
}

static void play_tones(struct ast_bridge_channel *bc, const char *spec)
{
	int ms = tones_ms(spec);
	if (ms <= 0 || ms > 5000) {
		return;
	}
	if (!ast_playtones_start(bc->chan, 0, spec, 0)) {
		ast_safe_sleep(bc->chan, ms);
		ast_playtones_stop(bc->chan);
	}
}

int cc_tones_to_peer(cc_chan *c, const char *tones)
{
	struct ast_channel *peer = ast_channel_bridge_peer(chan_of(c));
	struct ast_bridge_channel *bc;
	int res;

	if (!peer) {
		return -1;
	}
	bc = bridge_channel_of(peer);
	ast_channel_unref(peer);
	if (!bc) {
		return -1;
	}
	res = ast_bridge_channel_queue_playfile(bc, play_tones, tones, NULL);
	ao2_ref(bc, -1);
	return res;
}

/* One half of a key to a channel from a worker thread, as ast_write sends keys: under the
 * channel's lock, and only while the channel is up. ast_senddigit_external calls the channel
 * driver without the lock, and after a hangup chan_pjsip's tech_pvt is NULL: a key released
 * as the call ends crashed Asterisk (chan_pjsip_digit_begin, seen in the DTMF flood test). */
static int send_digit_locked(struct ast_channel *chan, char digit, int end, unsigned int ms)
{
	int res = -1;

	ast_channel_lock(chan);
	if (!ast_check_hangup(chan) && ast_channel_tech_pvt(chan)) {
		res = end ? ast_senddigit_end(chan, digit, ms) : ast_senddigit_begin(chan, digit);
	}
	ast_channel_unlock(chan);
	return res;
}

int cc_send_digits_external(cc_chan *c, const char *digits)
{
	struct ast_channel *chan = chan_of(c);
	const unsigned int ms = 100;

	for (; digits && *digits; digits++) {
		if (ast_channel_tech(chan)->send_digit_begin) {
			if (send_digit_locked(chan, *digits, 0, ms)) {
				return -1;
			}
			usleep(ms * 1000);
		}
		if (send_digit_locked(chan, *digits, 1, ms)) {
			return -1;
		}
	}
	return 0;
}

/* ---------------- AMI ---------------- */

void cc_manager_event(const char *channel, const char *body)
{
	manager_event(EVENT_FLAG_CALL, "CallConsent", "Channel: %s\r\n%s", channel, body);
}

void cc_module_event(const char *event, const char *body)
{
	manager_event(EVENT_FLAG_SYSTEM, event, "%s", body);
}

/* Collects the lines of an AMI answer, so that success or error is known before any is sent. */
static void append_line(void *ctx, const char *line)
{
	struct ast_str **buf = ctx;
	ast_str_append(buf, 0, "%s\r\n", line);
}

static int ami_control(struct mansession *s, const struct message *m, enum cc_control control)
{
	const char *channel = astman_get_header(m, "Channel");
	struct ast_str *out;

	if (ast_strlen_zero(channel)) {
		astman_send_error(s, m, "Channel is required (the caller's or the agent's channel)");
		return 0;
	}
	out = ast_str_create(512);
	if (!out) {
		astman_send_error(s, m, "Out of memory");
		return 0;
	}
	if (cc_rs_control(channel, control, CC_SOURCE_AMI, append_line, &out)) {
		/* One line saying why, without its line ending. */
		ast_str_truncate(out, ast_str_strlen(out) > 2 ? ast_str_strlen(out) - 2 : 0);
		astman_send_error(s, m, ast_str_buffer(out));
	} else {
		const char *id = astman_get_header(m, "ActionID");
		astman_append(s, "Response: Success\r\n");
		if (!ast_strlen_zero(id)) {
			astman_append(s, "ActionID: %s\r\n", id);
		}
		astman_append(s, "%s\r\n", ast_str_buffer(out));
	}
	ast_free(out);
	return 0;
}

static int ami_pause(struct mansession *s, const struct message *m) { return ami_control(s, m, CC_CONTROL_PAUSE); }
static int ami_resume(struct mansession *s, const struct message *m) { return ami_control(s, m, CC_CONTROL_RESUME); }
static int ami_delete(struct mansession *s, const struct message *m) { return ami_control(s, m, CC_CONTROL_DELETE); }
static int ami_status(struct mansession *s, const struct message *m) { return ami_control(s, m, CC_CONTROL_STATUS); }
static int ami_secure(struct mansession *s, const struct message *m) { return ami_control(s, m, CC_CONTROL_SECURE); }

/* ---------------- CLI ---------------- */

static void complete_line(void *ctx, const char *line)
{
	const char *word = ctx;
	if (!strncasecmp(line, word, strlen(word))) {
		ast_cli_completion_add(ast_strdup(line));
	}
}

static char *complete_calls(const char *word)
{
	cc_rs_show(CC_SHOW_NAMES, NULL, complete_line, (void *) word);
	return NULL;
}

static void cli_line(void *ctx, const char *line)
{
	ast_cli(*(int *) ctx, "%s\n", line);
}

static char *cli_show(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	int fd = a->fd;

	switch (cmd) {
	case CLI_INIT:
		e->command = "callconsent show";
		e->usage =
			"Usage: callconsent show calls|profiles|status|call <channel>\n"
			"       Live calls watched by CallConsent (state, recorded, paused, agent),\n"
			"       the loaded profiles, the module's health (audit log writes, chain head,\n"
			"       key id), or one call in detail.\n";
		return NULL;
	case CLI_GENERATE:
		if (a->pos == 2) {
			static const char * const choices[] = { "calls", "profiles", "status", "call", NULL };
			return ast_cli_complete(a->word, choices, a->n);
		}
		if (a->pos == 3 && !strcasecmp(a->argv[2], "call")) {
			return complete_calls(a->word);
		}
		return NULL;
	}
	if (a->argc == 3 && !strcasecmp(a->argv[2], "calls")) {
		cc_rs_show(CC_SHOW_CALLS, NULL, cli_line, &fd);
	} else if (a->argc == 3 && !strcasecmp(a->argv[2], "profiles")) {
		cc_rs_show(CC_SHOW_PROFILES, NULL, cli_line, &fd);
	} else if (a->argc == 3 && !strcasecmp(a->argv[2], "status")) {
		cc_rs_show(CC_SHOW_STATUS, NULL, cli_line, &fd);
	} else if (a->argc == 4 && !strcasecmp(a->argv[2], "call")) {
		cc_rs_show(CC_SHOW_CALL, a->argv[3], cli_line, &fd);
	} else {
		return CLI_SHOWUSAGE;
	}
	return CLI_SUCCESS;
}

static char *cli_reload(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	switch (cmd) {
	case CLI_INIT:
		e->command = "callconsent reload";
		e->usage =
			"Usage: callconsent reload\n"
			"       Reads callconsent.conf again. Calls in progress keep their profile; a bad\n"
			"       file is refused with its reason and the running configuration stays.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 2) {
		return CLI_SHOWUSAGE;
	}
	ast_cli(a->fd, "%s\n", cc_rs_reload() ? "callconsent: reload refused, see the log for the reason" : "callconsent: configuration reloaded");
	return CLI_SUCCESS;
}

static struct ast_cli_entry cli_entries[] = {
	AST_CLI_DEFINE(cli_show, "Show calls and profiles of res_callconsent"),
	AST_CLI_DEFINE(cli_reload, "Reload callconsent.conf"),
};

/* ---------------- dialplan function ---------------- */

struct func_out {
	char *buf;
	size_t len;
};

/* The function's value goes into the buffer Asterisk gives (its size is Asterisk's contract). */
static void func_line(void *ctx, const char *line)
{
	struct func_out *o = ctx;
	ast_copy_string(o->buf, line, o->len);
}

/* Whether this thread serves one of Asterisk's external interfaces rather than a channel's
 * dialplan: every TCP/TLS session thread (AMI, ARI and HTTP) inhibits privilege escalations
 * (main/tcptls.c), the mark Asterisk's dangerous functions are refused by. Read by swapping the
 * mark in and putting back what was there. */
static int external_thread(void)
{
	int was = ast_thread_inhibit_escalations_swap(1);
	if (was <= 0) {
		ast_thread_inhibit_escalations_swap(0);
	}
	return was > 0;
}

static int func_read(struct ast_channel *chan, const char *cmd, char *data, char *buf, size_t len)
{
	struct func_out o = { buf, len };
	if (!chan || !len) {
		return -1;
	}
	buf[0] = '\0';
	return cc_rs_function((cc_chan *) chan, data ? data : "", external_thread(), func_line, &o);
}

static struct ast_custom_function callconsent_function = {
	.name = "CALLCONSENT",
	.read = func_read,
};

/* ---------------- applications and module ---------------- */

static const char app_consent[] = "CallConsent";
static const char app_control[] = "CallConsentControl";

static int exec_consent(struct ast_channel *chan, const char *data)
{
	return cc_rs_exec((cc_chan *) chan, data ? data : "");
}

static int exec_control(struct ast_channel *chan, const char *data)
{
	return cc_rs_control_exec((cc_chan *) chan, data ? data : "");
}

static int unload_module(void)
{
	ast_cli_unregister_multiple(cli_entries, ARRAY_LEN(cli_entries));
	ast_custom_function_unregister(&callconsent_function);
	ast_manager_unregister("CallConsentPause");
	ast_manager_unregister("CallConsentResume");
	ast_manager_unregister("CallConsentDelete");
	ast_manager_unregister("CallConsentStatus");
	ast_manager_unregister("CallConsentSecureEntry");
	ast_unregister_application(app_control);
	ast_unregister_application(app_consent);
	cc_rs_unload();
	return 0;
}

static int load_module(void)
{
	if (cc_rs_load()) {
		return AST_MODULE_LOAD_DECLINE;
	}
	if (ast_register_application_xml(app_consent, exec_consent)
		|| ast_register_application_xml(app_control, exec_control)
		|| ast_manager_register_xml("CallConsentPause", EVENT_FLAG_CALL, ami_pause)
		|| ast_manager_register_xml("CallConsentResume", EVENT_FLAG_CALL, ami_resume)
		|| ast_manager_register_xml("CallConsentDelete", EVENT_FLAG_CALL, ami_delete)
		|| ast_manager_register_xml("CallConsentStatus", EVENT_FLAG_CALL | EVENT_FLAG_REPORTING, ami_status)
		|| ast_manager_register_xml("CallConsentSecureEntry", EVENT_FLAG_CALL, ami_secure)
		|| ast_custom_function_register(&callconsent_function)
		|| ast_cli_register_multiple(cli_entries, ARRAY_LEN(cli_entries))) {
		unload_module();
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	return cc_rs_reload() ? AST_MODULE_LOAD_DECLINE : AST_MODULE_LOAD_SUCCESS;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER, "Call recording consent: notice, opt-out, agent pause",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
	.requires = "app_mixmonitor",
);
