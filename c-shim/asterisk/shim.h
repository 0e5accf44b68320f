/*
 * The narrow, C-shaped boundary between res_callconsent's Rust code and Asterisk.
 * bindgen reads this header only. `cc_*` are shim functions Rust calls; `cc_rs_*` are Rust
 * functions the shim calls (each enters through the Rust panic guard).
 */
#ifndef CALLCONSENT_SHIM_H
#define CALLCONSENT_SHIM_H

#include <stddef.h>

/* Opaque handle for `struct ast_channel`. */
typedef struct cc_chan cc_chan;

/* Log levels, as Asterisk's __LOG_* values. */
enum cc_log_level { CC_LOG_DEBUG = 0, CC_LOG_NOTICE = 2, CC_LOG_WARNING = 3, CC_LOG_ERROR = 4 };

/* Frame directions and kinds passed to cc_rs_frame. */
enum cc_dir { CC_DIR_READ = 0, CC_DIR_WRITE = 1 };
enum cc_frame_kind { CC_FRAME_DTMF_BEGIN = 1, CC_FRAME_DTMF_END = 2, CC_FRAME_VOICE = 3 };
/* What cc_rs_frame answers. */
enum cc_answer { CC_PASS = 0, CC_DROP = 1 };

/* Results of cc_stream_and_wait other than a digit (a digit is returned as its character). */
enum cc_stream_result { CC_STREAM_DONE = 0, CC_STREAM_HANGUP = -1, CC_STREAM_MISSING = -2 };

/* What a control asks for (AMI actions, CallConsentControl()). */
enum cc_control { CC_CONTROL_PAUSE = 0, CC_CONTROL_RESUME = 1, CC_CONTROL_DELETE = 2, CC_CONTROL_STATUS = 3, CC_CONTROL_SECURE = 4 };
/* Where a control comes from. */
enum cc_source { CC_SOURCE_AMI = 0, CC_SOURCE_DIALPLAN = 1 };
/* What the CLI shows. */
enum cc_show { CC_SHOW_CALLS = 0, CC_SHOW_PROFILES = 1, CC_SHOW_CALL = 2, CC_SHOW_NAMES = 3, CC_SHOW_STATUS = 4 };

/* Output, one line at a time (no line ending): each caller decides where a line goes (ast_cli,
 * astman_append, a completion, a function's buffer), so nothing is cut at a fixed size. */
typedef void (*cc_line_writer)(void *ctx, const char *line);

/* ---- Rust side, called by the shim (every one goes through the Rust guard) ---- */
int cc_rs_load(void);
int cc_rs_reload(void);
void cc_rs_unload(void);
int cc_rs_exec(cc_chan *chan, const char *data);
int cc_rs_control_exec(cc_chan *chan, const char *data);
/* `len_ms`: a key's length at its END as the channel reports it (0: not given). */
int cc_rs_frame(void *call, cc_chan *chan, int dir, int kind, int digit, long len_ms);
/* The watched caller channel (by uniqueid) joined a bridge: an agent answered, or a transfer. */
void cc_rs_joined(const char *uniqueid, cc_chan *chan);
void cc_rs_hook_destroy(void *call);
/* AMI: a control (enum cc_control) from a source (enum cc_source). Returns 0 and "Key: value"
 * lines, or -1 and one line saying why. */
int cc_rs_control(const char *channel, int control, int source, cc_line_writer out, void *ctx);
/* CLI: what (enum cc_show); arg is the channel for CC_SHOW_CALL. */
void cc_rs_show(int what, const char *arg, cc_line_writer out, void *ctx);
/* CALLCONSENT(field) on a channel: 0 and the value as one line, or -1. */
/* `external`: the read comes from an external interface's thread (AMI Getvar, ARI, HTTP), not
 * from the channel's dialplan. */
int cc_rs_function(cc_chan *chan, const char *field, int external, cc_line_writer out, void *ctx);
/* A configuration entry (see cc_config_read) and a text value (see cc_chan_getvar). */
void cc_rs_config_entry(void *ctx, const char *category, const char *name, const char *value,
	const char *file, int line);
void cc_rs_take_text(void *ctx, const char *text);

/* ---- Logging (the text is an argument, never a format string) ---- */
void cc_log(int level, const char *file, int line, const char *func, const char *msg);

/* ---- Paths from asterisk.conf ---- */
const char *cc_ast_config_dir(void);
const char *cc_ast_spool_dir(void);
const char *cc_ast_log_dir(void);
const char *cc_ast_var_dir(void);

/* ---- Configuration (Asterisk's config API) ----
 * Calls cc_rs_config_entry(ctx, ...) for every category (name == NULL) and every variable, in
 * file order. Returns 0, CC_CONFIG_MISSING or CC_CONFIG_INVALID. */
enum cc_config_status { CC_CONFIG_OK = 0, CC_CONFIG_MISSING = -1, CC_CONFIG_INVALID = -2 };
int cc_config_read(const char *filename, void *ctx);

/* ---- Channels ---- */
const char *cc_chan_name(cc_chan *chan);
const char *cc_chan_uniqueid(cc_chan *chan);
const char *cc_chan_linkedid(cc_chan *chan);
/* Hands a channel variable's value (empty when unset) to cc_rs_take_text(ctx, value). */
void cc_chan_getvar(cc_chan *chan, const char *name, void *ctx);
int cc_chan_setvar(cc_chan *chan, const char *name, const char *value);
void cc_chan_ref(cc_chan *chan);
void cc_chan_unref(cc_chan *chan);
/* Finds a channel by name or uniqueid; the result carries a reference (cc_chan_unref). */
cc_chan *cc_chan_get_by_name(const char *name);
/* Hands the caller's number (CALLERID(num), empty when unknown) to cc_rs_take_text(ctx, num). */
void cc_chan_caller_number(cc_chan *chan, void *ctx);

/* Whether a sound exists (ast_fileexists) for that language. */
int cc_sound_exists(const char *file, const char *language);
/* Plays a sound; stops on any of `digits` and returns it. See enum cc_stream_result. */
int cc_stream_and_wait(cc_chan *chan, const char *file, const char *digits);

/* ---- MixMonitor ---- */
int cc_mixmonitor_start(cc_chan *chan, const char *file, const char *options);
int cc_mixmonitor_stop(cc_chan *chan, const char *mixmon_id);
/* Mutes (mute = 1) or unmutes every MixMonitor audiohook of the channel, both directions. */
int cc_mixmonitor_mute(cc_chan *chan, int mute);

/* ---- Framehook ---- */
/* Attaches the watcher; returns its id (>= 0) or -1. `call` is handed back to cc_rs_frame.
 * `ticks` (an int Rust updates atomically, valid until cc_rs_hook_destroy) says whether voice
 * frames go to cc_rs_frame as clock ticks. */
int cc_hook_attach(cc_chan *chan, void *call, const int *ticks);
/* Calls cc_rs_joined each time the channel joins a bridge (a bridge join hook). */
int cc_watch_bridges(cc_chan *chan, const char *uniqueid);
/* The two-party bridge peer, and the other half of a Local channel; both carry a reference. */
cc_chan *cc_chan_bridge_peer(cc_chan *chan);
cc_chan *cc_chan_local_peer(cc_chan *chan);

/* ---- Playing to the parties while bridged (queued: never blocks) ----
 * cc_play_to_self: a sound to this channel's own party.
 * cc_tones_to_peer: a tone (Asterisk tone syntax, e.g. "950/200") to the bridged peer of chan.
 * Both return -1 when the channel is not in a bridge. */
int cc_play_to_self(cc_chan *chan, const char *file);
/* cc_run_gosub: Gosub(target) ("context,exten,priority") queued to this channel's bridge
 * channel, run on its own thread while it stays bridged. 0, or -1 when it is not bridged. */
int cc_run_gosub(cc_chan *chan, const char *target);
int cc_tones_to_peer(cc_chan *chan, const char *tones);
/* Sends DTMF digits to a channel from a worker thread (not the channel's own thread). */
int cc_send_digits_external(cc_chan *chan, const char *digits);

/* ---- AMI ---- */
void cc_manager_event(const char *channel, const char *body);
/* An event of the module itself, e.g. CallConsentAudit (system class). */
void cc_module_event(const char *event, const char *body);

#endif
