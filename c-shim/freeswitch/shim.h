/*
 * The narrow, C-shaped boundary between mod_callconsent's Rust code and FreeSWITCH 1.10.
 * bindgen reads this header only (no FreeSWITCH header is needed to bind it). `cc_fs_*` are
 * shim functions Rust calls; `cc_rs_fs_*` are Rust functions the shim calls (each enters
 * through the Rust panic guard). Sessions are named by uuid wherever a call may outlive a
 * callback: the shim locates the session (with its read lock) for the length of one call.
 */
#ifndef CALLCONSENT_FS_SHIM_H
#define CALLCONSENT_FS_SHIM_H

#include <stddef.h>

/* Opaque handle for `switch_core_session_t`, lent for one callback on its own thread. */
typedef struct cc_session cc_session;

/* Log levels, as FreeSWITCH's SWITCH_LOG_* values. */
enum cc_fs_log_level { CC_FS_LOG_DEBUG = 7, CC_FS_LOG_INFO = 6, CC_FS_LOG_NOTICE = 5, CC_FS_LOG_WARNING = 4, CC_FS_LOG_ERROR = 3 };

/* Key directions on the caller's session: received from the caller, or sent to the caller
 * (the agent's keys, through the bridge). */
enum cc_fs_dir { CC_FS_DIR_RECV = 0, CC_FS_DIR_SEND = 1 };
/* What cc_rs_fs_dtmf answers. */
enum cc_fs_answer { CC_FS_PASS = 0, CC_FS_DROP = 1 };

/* Results of cc_fs_play other than a digit (a digit is returned as its character). */
enum cc_fs_play_result { CC_FS_PLAY_DONE = 0, CC_FS_PLAY_HANGUP = -1, CC_FS_PLAY_MISSING = -2 };

/* What FreeSWITCH's directories are. */
enum cc_fs_dir_kind { CC_FS_DIR_CONF = 0, CC_FS_DIR_LOG = 1, CC_FS_DIR_DB = 2, CC_FS_DIR_RECORDINGS = 3, CC_FS_DIR_SOUNDS = 4 };

typedef void (*cc_line_writer)(void *ctx, const char *line);

/* ---- Rust side, called by the shim ---- */
int cc_rs_fs_load(void);
int cc_rs_fs_reload(void);
void cc_rs_fs_unload(void);
/* The `callconsent` application on the caller's session. */
void cc_rs_fs_exec(cc_session *session, const char *data);
/* A key on a watched caller's session (by uuid): RECV on the caller's thread, SEND on the
 * sender's (the agent's bridge thread). */
int cc_rs_fs_dtmf(const char *uuid, int dir, int digit, unsigned duration_ms);
/* A read frame of a watched call while it asks for clock ticks (the media bug, `call` its data). */
void cc_rs_fs_tick(void *call);
/* The watcher's media bug closed: the call hung up. */
void cc_rs_fs_close(void *call);
/* A session joined a bridge (CHANNEL_BRIDGE event). */
void cc_rs_fs_bridged(const char *uuid);
/* An agent's key that a loopback leg bridged to the watched caller `uuid` has already relayed to
 * it past every DTMF hook (send_dtmf on the loopback's far side): seen from the DTMF event. */
void cc_rs_fs_agent_relayed(const char *uuid, int digit);
/* The `callconsent` API command; output one line at a time. Returns 0, or -1 on a usage error. */
/* `session_uuid`: the session the command runs on (a dialplan's ${callconsent(...)}), or ""
 * when it comes from fs_cli or ESL's api/bgapi. */
int cc_rs_fs_api(const char *cmd, const char *session_uuid, cc_line_writer out, void *ctx);
/* A configuration entry (see cc_fs_config_read): category "general" for <settings>, the profile's
 * name for a <profile>; name NULL opens a category. */
void cc_rs_fs_config_entry(void *ctx, const char *category, const char *name, const char *value,
	const char *file, int line);
/* A text value the shim hands back. */
void cc_rs_fs_take_text(void *ctx, const char *text);

/* ---- Logging (the text is an argument, never a format string) ---- */
void cc_fs_log(int level, const char *file, int line, const char *func, const char *msg);
const char *cc_fs_dir(int which);
/* Hands a global variable (vars.xml, e.g. sound_prefix; empty when unset) to cc_rs_fs_take_text. */
void cc_fs_global_var(const char *name, void *ctx);

/* ---- Configuration: callconsent.conf from the XML registry ----
 * Returns 0, -1 when there is no callconsent.conf, -2 when it is malformed. */
int cc_fs_config_read(void *ctx);

/* ---- Sessions lent for a callback ---- */
/* Hands the session's uuid / channel name / caller id number / a variable to cc_rs_fs_take_text. */
void cc_fs_session_text(cc_session *session, int what, const char *var, void *ctx);
enum cc_fs_text { CC_FS_UUID = 0, CC_FS_NAME = 1, CC_FS_CALLER_NUMBER = 2, CC_FS_VAR = 3 };

/* ---- Sessions by uuid (any thread) ---- */
/* Plays a sound (anything `playback` takes) on the session's own thread; stops on any of `keys`. */
int cc_fs_play(const char *uuid, const char *file, const char *keys);
/* Attaches the watcher: DTMF hooks and a media bug holding `call` (handed to cc_rs_fs_close once);
 * `ticks` (valid as long as `call`) says whether read frames go to cc_rs_fs_tick. */
int cc_fs_watch(const char *uuid, void *call, const int *ticks);
int cc_fs_setvar(const char *uuid, const char *name, const char *value);
/* Hands a variable of the session (empty when unset or gone) to cc_rs_fs_take_text. */
void cc_fs_getvar(const char *uuid, const char *name, void *ctx);
/* The bridged partner's uuid and name (empty when none). */
void cc_fs_partner(const char *uuid, int what, void *ctx);
int cc_fs_record_start(const char *uuid, const char *file);
int cc_fs_record_stop(const char *uuid, const char *file);
int cc_fs_record_mask(const char *uuid, const char *file, int on);
/* Plays a sound (or tone_stream) to this session's own party while bridged; non-blocking. */
int cc_fs_broadcast(const char *uuid, const char *file);
/* Sends DTMF digits to the session, past every DTMF hook. */
int cc_fs_send_digits(const char *uuid, const char *digits);
int cc_fs_exists(const char *uuid);

/* ---- Events ---- */
/* A CUSTOM event of `subclass` with these headers ("Name: value" lines), with the session's
 * channel data when `uuid` names a live session. */
void cc_fs_event(const char *subclass, const char *uuid, const char *headers);

#endif
