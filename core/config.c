/*
 * Config file parser: text in, struct vm_config out. Model: Firecracker's
 * pure request parsers, unit-tested and fuzzed with hostile input, so
 * config_parse() does no I/O, keeps no globals and never trusts a length.
 * Only the main thread calls it, before anything else starts; the parser
 * state lives on the caller's stack and the result belongs to the caller.
 *
 * A line is blank, a comment, a [section] header or `key = value`. Values
 * are scanned generically (string, integer, boolean, one-line array of
 * those), then type-checked against the key's table row, then handed to
 * the key's setter for range checks; a new key is one row plus a setter.
 * Every error is one line: "FILE:LINE: KEY: expected WHAT, found WHAT".
 */
#include "config.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MEMORY_DEFAULT (512 * MiB)
#define CFG_MEMORY_MIN (16 * MiB)
#define CFG_MEMORY_ALIGN (4 * KiB)
#define CFG_POLL_MAX_NS 1000000000ULL
#define CFG_CMDLINE_DEFAULT "console=ttyS0"
#define CFG_ARRAY_MAX 256	/* elements in one array value */
#define CFG_KEYS_MAX 10		/* keys in one section */
#define CFG_QUOTE_MAX 80	/* source bytes quoted in a message */
#define CFG_WHERE_MAX 256
#define CFG_DISK_SECTOR 512ULL
#define CFG_DISK_SIZE_MAX (1ULL << 63)	/* offsets stay signed 64-bit */
#define CFG_QUEUE_SIZE_DEFAULT 256
#define CFG_QUEUE_SIZE_MIN 16
#define CFG_QUEUE_SIZE_MAX 1024
#define CFG_L2_CACHE_MIN (64 * KiB)
#define CFG_L2_CACHE_MAX GiB

enum cfg_type { CFG_INT, CFG_STRING, CFG_BOOL, CFG_ARRAY };

struct cfg_value {
	enum cfg_type type;
	const char *src;		/* as written, for messages */
	size_t srclen;
	uint64_t num;			/* CFG_INT; CFG_BOOL: 0 or 1 */
	const char *str;		/* CFG_STRING: decoded, NUL-terminated */
	size_t len;
	const struct cfg_value *elems;	/* CFG_ARRAY */
	unsigned n;
};

struct cfg_parser;

struct cfg_key {
	const char *name;
	enum cfg_type type;
	enum cfg_type elem;		/* CFG_ARRAY only */
	const char *want;		/* "an integer": the WHAT of messages */
	int (*set)(struct cfg_parser *p, const struct cfg_value *v);
};

struct cfg_section {
	const char *name;
	bool named;			/* [iothread.NAME] */
	int (*open)(struct cfg_parser *p, const char *name, size_t len);
	const struct cfg_key *keys;
	unsigned n_keys;
};

struct cfg_parser {
	const char *name;
	uint64_t host_ram;		/* 0: no upper bound */
	struct vm_config *cfg;
	char *err;
	size_t errlen;
	const char *pos, *eol;		/* cursor in the current line */
	unsigned lineno;
	const struct cfg_section *sec;	/* NULL before the first header */
	struct iothread_config *iot;	/* the current [iothread.NAME] */
	struct disk_config *disk;	/* the current [disk.NAME] */
	char prefix[CONFIG_NAME_MAX + 16];	/* "iothread.io0": key names */
	char where[CFG_WHERE_MAX];	/* the KEY part of messages */
	unsigned key_line[CFG_KEYS_MAX];	/* in the current section; 0: unset */
	unsigned vm_line, serial_line;
	unsigned iot_line[CONFIG_MAX_IOTHREADS];
	/* IOThread names given by disks' iothreads keys, which may come
	 * before their sections: disk_config.iothreads holds indices into
	 * this table until cfgp_finish resolves them. */
	char iot_names[CONFIG_MAX_IOTHREADS][CONFIG_NAME_MAX];
	unsigned n_iot_names;
	bool memory_set;
	size_t sused;			/* bytes of sbuf used by this line */
	char sbuf[CONFIG_LINE_MAX];	/* decoded strings of this line */
	struct cfg_value elems[CFG_ARRAY_MAX];
};

/* A piece of source text made safe for a one-line message. */
struct cfg_quoted {
	char s[CFG_QUOTE_MAX * 4 + 32];
};

__attribute__((format(printf, 2, 3)))
static int cfgp_fail(struct cfg_parser *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || !p->errlen)
		return -EINVAL;
	n = snprintf(p->err, p->errlen, "%s:%u: %s: ", p->name, p->lineno, p->where);
	if (n < 0 || (size_t)n >= p->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

__attribute__((format(printf, 2, 3)))
static void cfgp_where(struct cfg_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->where, sizeof(p->where), fmt, ap);
	va_end(ap);
}

/* Writes pre, src (printable ASCII as is, other bytes as \xNN, cut with
 * "..." after CFG_QUOTE_MAX bytes) and post: a message must stay one line
 * whatever bytes the file holds. pre and post are short literals. */
static const char *cfg_quote(struct cfg_quoted *q, const char *pre, const char *src,
			     size_t len, const char *post)
{
	size_t n = (size_t)snprintf(q->s, sizeof(q->s), "%s", pre);
	size_t i;

	for (i = 0; i < len && i < CFG_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c >= 0x20 && c < 0x7f)
			q->s[n++] = (char)c;
		else
			n += (size_t)snprintf(q->s + n, 5, "\\x%02x", c);
	}
	snprintf(q->s + n, sizeof(q->s) - n, "%s%s", len > CFG_QUOTE_MAX ? "..." : "", post);
	return q->s;
}

static bool cfg_is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool cfg_is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Length of the bare word at s: up to a blank, ',', ']', '#' or eol. */
static size_t cfg_token_len(const char *s, const char *eol)
{
	const char *t = s;

	while (t < eol && !cfg_is_space(*t) && *t != ',' && *t != ']' && *t != '#')
		t++;
	return (size_t)(t - s);
}

static void cfgp_skip_space(struct cfg_parser *p)
{
	while (p->pos < p->eol && cfg_is_space(*p->pos))
		p->pos++;
}

static bool cfgp_at(struct cfg_parser *p, char c)
{
	return p->pos < p->eol && *p->pos == c;
}

static bool cfgp_at_end(struct cfg_parser *p)
{
	return p->pos == p->eol || *p->pos == '#';
}

/* Describes what the cursor is on, for the "found" part of a message. */
static const char *cfgp_found(struct cfg_parser *p, struct cfg_quoted *q)
{
	size_t len;

	if (p->pos >= p->eol)
		return "end of line";
	if (*p->pos == '#')
		return "a comment";
	len = cfg_token_len(p->pos, p->eol);
	return cfg_quote(q, "'", p->pos, len ? len : 1, "'");
}

static const char *cfg_found_value(const struct cfg_value *v, struct cfg_quoted *q)
{
	static const char *const what[] = {
		[CFG_INT] = "the integer ",
		[CFG_STRING] = "the string ",
		[CFG_BOOL] = "the boolean ",
		[CFG_ARRAY] = "the array ",
	};

	return cfg_quote(q, what[v->type], v->src, v->srclen, "");
}

/* A value as written, for range errors ("found 8M"). */
static const char *cfg_src(const struct cfg_value *v, struct cfg_quoted *q)
{
	return cfg_quote(q, "", v->src, v->srclen, "");
}

/* Bytes in the largest K/M/G unit that is exact, so the parser accepts
 * what the message suggests. */
static const char *cfg_size_str(uint64_t bytes, char *buf, size_t size)
{
	static const char units[] = "GMK";
	uint64_t unit = GiB;
	unsigned i;

	for (i = 0; i < 3; i++, unit /= 1024) {
		if (bytes && bytes % unit == 0) {
			snprintf(buf, size, "%llu%c", (unsigned long long)(bytes / unit), units[i]);
			return buf;
		}
	}
	snprintf(buf, size, "%llu", (unsigned long long)bytes);
	return buf;
}

/* Parses a whole bare word as decimal or 0x hex with an optional K, M or
 * G suffix (binary). Returns 0, -EINVAL for bad syntax, -ERANGE when the
 * value does not fit in 64 bits. */
static int cfg_parse_uint(const char *s, size_t len, uint64_t *out)
{
	unsigned base = 10, digit;
	size_t i = 0, first;
	uint64_t v = 0, mul = 1;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (first = i; i < len; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			digit = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			digit = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			digit = (unsigned)(c - 'A' + 10);
		else
			break;
		if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, digit, &v))
			return -ERANGE;
	}
	if (i == first)
		return -EINVAL;
	if (i < len) {
		mul = s[i] == 'K' ? KiB : s[i] == 'M' ? MiB : s[i] == 'G' ? GiB : 0;
		if (!mul || ++i != len)
			return -EINVAL;
	}
	if (__builtin_mul_overflow(v, mul, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

static bool cfg_key_takes(const struct cfg_key *k, enum cfg_type t)
{
	return k->type == t || (k->type == CFG_ARRAY && k->elem == t);
}

/* An escape after '\' at *s; moves *s past it. */
static int cfgp_escape(struct cfg_parser *p, const char **s, char *c)
{
	static const char from[] = "\"\\nt", to[] = "\"\\\n\t";
	const char *hit;
	struct cfg_quoted q;

	if (*s >= p->eol)
		return cfgp_fail(p, "expected one of the escapes \\\" \\\\ \\n \\t, found end of line");
	hit = **s ? strchr(from, **s) : NULL;
	if (!hit)
		return cfgp_fail(p, "expected one of the escapes \\\" \\\\ \\n \\t, found %s",
				 cfg_quote(&q, "'\\", *s, 1, "'"));
	*c = to[hit - from];
	(*s)++;
	return 0;
}

/* A quoted string at the cursor, decoded into the line's sbuf. */
static int cfgp_string(struct cfg_parser *p, struct cfg_value *v)
{
	char *out = p->sbuf + p->sused;
	size_t room = sizeof(p->sbuf) - p->sused, n = 0;
	const char *s = p->pos + 1;
	struct cfg_quoted q;
	char c;
	int ret;

	for (;;) {
		if (s >= p->eol)
			return cfgp_fail(p, "expected a closing '\"', found end of line");
		c = *s++;
		if (c == '"')
			break;
		if (c == '\\') {
			ret = cfgp_escape(p, &s, &c);
			if (ret)
				return ret;
		} else if (c != '\t' && ((unsigned char)c < 0x20 || c == 0x7f)) {
			return cfgp_fail(p, "expected printable text in the string, found %s",
					 cfg_quote(&q, "", s - 1, 1, ""));
		}
		/* Decoded text is never longer than the line, so this only
		 * guards the invariant. */
		if (n + 1 >= room)
			return cfgp_fail(p, "expected a shorter string, found one that fills the line");
		out[n++] = c;
	}
	out[n] = '\0';
	p->sused += n + 1;
	*v = (struct cfg_value){ .type = CFG_STRING, .src = p->pos,
				 .srclen = (size_t)(s - p->pos), .str = out, .len = n };
	p->pos = s;
	return 0;
}

/* A bare word at the cursor: true, false or an integer. */
static int cfgp_word(struct cfg_parser *p, const struct cfg_key *k, struct cfg_value *v)
{
	size_t len = cfg_token_len(p->pos, p->eol);
	struct cfg_quoted q;
	int ret = -EINVAL;

	*v = (struct cfg_value){ .type = CFG_INT, .src = p->pos, .srclen = len };
	if (!len)
		return cfgp_fail(p, "expected %s, found %s", k->want, cfgp_found(p, &q));
	if ((len == 4 && !memcmp(p->pos, "true", 4)) || (len == 5 && !memcmp(p->pos, "false", 5))) {
		v->type = CFG_BOOL;
		v->num = len == 4;
		ret = 0;
	} else if (*p->pos >= '0' && *p->pos <= '9') {
		ret = cfg_parse_uint(p->pos, len, &v->num);
	}
	if (ret == -ERANGE && cfg_key_takes(k, CFG_INT))
		return cfgp_fail(p, "expected an integer below 2^64, found %s", cfg_src(v, &q));
	if (ret)
		return cfgp_fail(p, "expected %s, found %s", k->want,
				 cfg_quote(&q, "'", p->pos, len, "'"));
	p->pos += len;
	return 0;
}

static int cfgp_scalar(struct cfg_parser *p, const struct cfg_key *k, struct cfg_value *v)
{
	if (cfgp_at(p, '"'))
		return cfgp_string(p, v);
	if (cfgp_at(p, '['))
		return cfgp_fail(p, "expected %s, found a nested array", k->want);
	return cfgp_word(p, k, v);
}

/* A one-line array of scalars; a trailing comma is allowed. */
static int cfgp_array(struct cfg_parser *p, const struct cfg_key *k, struct cfg_value *v)
{
	const char *start = p->pos++;
	struct cfg_quoted q;
	unsigned n = 0;
	int ret;

	cfgp_skip_space(p);
	while (!cfgp_at(p, ']')) {
		if (n == CFG_ARRAY_MAX)
			return cfgp_fail(p, "expected at most %d array elements, found more",
					 CFG_ARRAY_MAX);
		ret = cfgp_scalar(p, k, &p->elems[n++]);
		if (ret)
			return ret;
		cfgp_skip_space(p);
		if (cfgp_at(p, ',')) {
			p->pos++;
			cfgp_skip_space(p);
		} else if (!cfgp_at(p, ']')) {
			return cfgp_fail(p, "expected ',' or ']' in the array, found %s",
					 cfgp_found(p, &q));
		}
	}
	p->pos++;
	*v = (struct cfg_value){ .type = CFG_ARRAY, .src = start,
				 .srclen = (size_t)(p->pos - start), .elems = p->elems, .n = n };
	return 0;
}

static int cfgp_check_type(struct cfg_parser *p, const struct cfg_key *k,
			   const struct cfg_value *v)
{
	struct cfg_quoted q;
	unsigned i;

	if (v->type != k->type)
		return cfgp_fail(p, "expected %s, found %s", k->want, cfg_found_value(v, &q));
	for (i = 0; v->type == CFG_ARRAY && i < v->n; i++) {
		if (v->elems[i].type != k->elem)
			return cfgp_fail(p, "expected %s, found %s", k->want,
					 cfg_found_value(&v->elems[i], &q));
	}
	return 0;
}

/* ---- setters: range and meaning of each key ---- */

/* Resolves a relative path against the config file's folder, without
 * touching the file system: the VM builder checks that it exists. */
static int cfgp_path(struct cfg_parser *p, const struct cfg_value *v, char out[PATH_MAX])
{
	const char *slash = strrchr(p->name, '/');
	size_t dirlen = 0;

	if (!v->len)
		return cfgp_fail(p, "expected a non-empty path, found \"\"");
	if (v->str[0] != '/' && slash)
		dirlen = (size_t)(slash - p->name) + 1;
	if (dirlen + v->len >= PATH_MAX)
		return cfgp_fail(p, "expected a path of at most %d bytes once resolved, found %zu bytes",
				 PATH_MAX - 1, dirlen + v->len);
	memcpy(out, p->name, dirlen);
	memcpy(out + dirlen, v->str, v->len + 1);
	return 0;
}

static int cfg_set_memory(struct cfg_parser *p, const struct cfg_value *v)
{
	char lim[32];
	struct cfg_quoted q;

	if (v->num < CFG_MEMORY_MIN)
		return cfgp_fail(p, "expected at least %s, found %s",
				 cfg_size_str(CFG_MEMORY_MIN, lim, sizeof(lim)), cfg_src(v, &q));
	if (v->num % CFG_MEMORY_ALIGN)
		return cfgp_fail(p, "expected a multiple of %s, found %s",
				 cfg_size_str(CFG_MEMORY_ALIGN, lim, sizeof(lim)), cfg_src(v, &q));
	if (p->host_ram && v->num > p->host_ram)
		return cfgp_fail(p, "expected at most %s (the host's RAM), found %s",
				 cfg_size_str(p->host_ram, lim, sizeof(lim)), cfg_src(v, &q));
	p->cfg->memory = v->num;
	p->cfg->line.memory = p->lineno;
	p->memory_set = true;
	return 0;
}

static int cfg_set_vcpus(struct cfg_parser *p, const struct cfg_value *v)
{
	struct cfg_quoted q;

	if (v->num < 1 || v->num > CONFIG_MAX_VCPUS)
		return cfgp_fail(p, "expected 1 to %d, found %s", CONFIG_MAX_VCPUS, cfg_src(v, &q));
	p->cfg->vcpus = (unsigned)v->num;
	return 0;
}

static int cfg_set_kernel(struct cfg_parser *p, const struct cfg_value *v)
{
	p->cfg->line.kernel = p->lineno;
	return cfgp_path(p, v, p->cfg->kernel);
}

static int cfg_set_initrd(struct cfg_parser *p, const struct cfg_value *v)
{
	p->cfg->line.initrd = p->lineno;
	return cfgp_path(p, v, p->cfg->initrd);
}

static int cfg_set_cmdline(struct cfg_parser *p, const struct cfg_value *v)
{
	if (v->len >= CONFIG_CMDLINE_MAX)
		return cfgp_fail(p, "expected at most %d bytes, found %zu bytes",
				 CONFIG_CMDLINE_MAX - 1, v->len);
	memcpy(p->cfg->cmdline, v->str, v->len + 1);
	p->cfg->line.cmdline = p->lineno;
	return 0;
}

static int cfg_set_output(struct cfg_parser *p, const struct cfg_value *v)
{
	struct vm_config *cfg = p->cfg;

	if (!strcmp(v->str, "stdio")) {
		cfg->serial_output = SERIAL_OUT_STDIO;
		cfg->serial_path[0] = '\0';
		return 0;
	}
	if (!strcmp(v->str, "none")) {
		cfg->serial_output = SERIAL_OUT_NONE;
		cfg->serial_path[0] = '\0';
		return 0;
	}
	cfg->serial_output = SERIAL_OUT_FILE;
	return cfgp_path(p, v, cfg->serial_path);
}

static int cfg_set_cpus(struct cfg_parser *p, const struct cfg_value *v)
{
	uint64_t seen[CONFIG_MAX_CPUS / 64] = { 0 };
	struct cfg_quoted q;
	unsigned i;

	if (!v->n)
		return cfgp_fail(p, "expected at least one CPU, found an empty array");
	for (i = 0; i < v->n; i++) {
		uint64_t cpu = v->elems[i].num;

		if (cpu >= CONFIG_MAX_CPUS)
			return cfgp_fail(p, "expected host CPU numbers below %d, found %s",
					 CONFIG_MAX_CPUS, cfg_src(&v->elems[i], &q));
		if (seen[cpu / 64] & (1ULL << (cpu % 64)))
			return cfgp_fail(p, "expected each CPU once, found %s twice",
					 cfg_src(&v->elems[i], &q));
		seen[cpu / 64] |= 1ULL << (cpu % 64);
		p->iot->cpus[i] = (unsigned)cpu;
	}
	p->iot->n_cpus = v->n;
	p->iot->cpus_line = p->lineno;
	return 0;
}

static int cfg_set_poll_max_ns(struct cfg_parser *p, const struct cfg_value *v)
{
	struct cfg_quoted q;

	if (v->num > CFG_POLL_MAX_NS)
		return cfgp_fail(p, "expected at most %llu (1 s), found %s",
				 (unsigned long long)CFG_POLL_MAX_NS, cfg_src(v, &q));
	p->iot->poll_max_ns = v->num;
	return 0;
}

static const char *const cfg_disk_formats[] = {
	[DISK_FORMAT_RAW] = "raw",
	[DISK_FORMAT_NULL] = "null",
	[DISK_FORMAT_QCOW2] = "qcow2",
	[DISK_FORMAT_AUTO] = "auto",
};

static const char *const cfg_disk_caches[] = {
	[DISK_CACHE_WRITEBACK] = "writeback",
	[DISK_CACHE_NONE] = "none",
};

/* The index of v's string among the n names, or -EINVAL with a message
 * that lists them all. */
static int cfgp_choice(struct cfg_parser *p, const struct cfg_value *v, const char *const *names,
		       unsigned n)
{
	char list[128];
	size_t len = 0;
	struct cfg_quoted q;
	unsigned i;

	for (i = 0; i < n; i++) {
		if (!strcmp(v->str, names[i]))
			return (int)i;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s\"%s\"",
					!i ? "" : i + 1 < n ? ", " : " or ", names[i]);
	}
	return cfgp_fail(p, "expected %s, found %s", list, cfg_found_value(v, &q));
}

static int cfg_set_disk_path(struct cfg_parser *p, const struct cfg_value *v)
{
	p->disk->line.path = p->lineno;
	return cfgp_path(p, v, p->disk->path);
}

static int cfg_set_format(struct cfg_parser *p, const struct cfg_value *v)
{
	int i = cfgp_choice(p, v, cfg_disk_formats, ARRAY_SIZE(cfg_disk_formats));

	if (i < 0)
		return i;
	p->disk->format = (enum disk_format)i;
	p->disk->line.format = p->lineno;
	return 0;
}

static int cfg_set_cache(struct cfg_parser *p, const struct cfg_value *v)
{
	int i = cfgp_choice(p, v, cfg_disk_caches, ARRAY_SIZE(cfg_disk_caches));

	if (i < 0)
		return i;
	p->disk->cache = (enum disk_cache)i;
	p->disk->line.cache = p->lineno;
	return 0;
}

static int cfg_set_readonly(struct cfg_parser *p, const struct cfg_value *v)
{
	p->disk->readonly = v->num;
	p->disk->line.readonly = p->lineno;
	return 0;
}

static int cfg_set_num_queues(struct cfg_parser *p, const struct cfg_value *v)
{
	struct cfg_quoted q;

	if (v->num < 1 || v->num > CONFIG_MAX_QUEUES)
		return cfgp_fail(p, "expected 1 to %d, found %s", CONFIG_MAX_QUEUES, cfg_src(v, &q));
	p->disk->num_queues = (unsigned)v->num;
	p->disk->line.num_queues = p->lineno;
	return 0;
}

static int cfg_set_queue_size(struct cfg_parser *p, const struct cfg_value *v)
{
	struct cfg_quoted q;

	if (v->num < CFG_QUEUE_SIZE_MIN || v->num > CFG_QUEUE_SIZE_MAX || (v->num & (v->num - 1)))
		return cfgp_fail(p, "expected a power of two from %d to %d, found %s",
				 CFG_QUEUE_SIZE_MIN, CFG_QUEUE_SIZE_MAX, cfg_src(v, &q));
	p->disk->queue_size = (unsigned)v->num;
	p->disk->line.queue_size = p->lineno;
	return 0;
}

static int cfg_set_serial(struct cfg_parser *p, const struct cfg_value *v)
{
	if (v->len > CONFIG_SERIAL_MAX)
		return cfgp_fail(p, "expected at most %d bytes, found %zu bytes", CONFIG_SERIAL_MAX,
				 v->len);
	memcpy(p->disk->serial, v->str, v->len + 1);
	p->disk->line.serial = p->lineno;
	return 0;
}

static int cfg_set_size(struct cfg_parser *p, const struct cfg_value *v)
{
	char lim[32];
	struct cfg_quoted q;

	if (v->num < CFG_DISK_SECTOR)
		return cfgp_fail(p, "expected at least %llu, found %s", CFG_DISK_SECTOR, cfg_src(v, &q));
	if (v->num % CFG_DISK_SECTOR)
		return cfgp_fail(p, "expected a multiple of %llu, found %s", CFG_DISK_SECTOR,
				 cfg_src(v, &q));
	if (v->num > CFG_DISK_SIZE_MAX)
		return cfgp_fail(p, "expected at most %s, found %s",
				 cfg_size_str(CFG_DISK_SIZE_MAX, lim, sizeof(lim)), cfg_src(v, &q));
	p->disk->size = v->num;
	p->disk->line.size = p->lineno;
	return 0;
}

static int cfg_set_l2_cache(struct cfg_parser *p, const struct cfg_value *v)
{
	char lo[32], hi[32];
	struct cfg_quoted q;

	if (v->num < CFG_L2_CACHE_MIN || v->num > CFG_L2_CACHE_MAX)
		return cfgp_fail(p, "expected %s to %s, found %s",
				 cfg_size_str(CFG_L2_CACHE_MIN, lo, sizeof(lo)),
				 cfg_size_str(CFG_L2_CACHE_MAX, hi, sizeof(hi)), cfg_src(v, &q));
	p->disk->l2_cache = v->num;
	p->disk->line.l2_cache = p->lineno;
	return 0;
}

/* A section name, or one given in an array: 1 to CONFIG_NAME_MAX - 1
 * letters, digits, '_' and '-'. */
static int cfgp_check_name(struct cfg_parser *p, const char *name, size_t len)
{
	struct cfg_quoted q;
	size_t i = 0;

	while (i < len && cfg_is_name_char(name[i]))
		i++;
	if (!len || i < len)
		return cfgp_fail(p, "expected a name of letters, digits, '_' and '-', found %s",
				 cfg_quote(&q, "'", name, len, "'"));
	if (len >= CONFIG_NAME_MAX)
		return cfgp_fail(p, "expected a name of at most %d characters, found %zu",
				 CONFIG_NAME_MAX - 1, len);
	return 0;
}

/* The index of name in iot_names, added there if new. */
static int cfgp_iot_name(struct cfg_parser *p, const char *name, unsigned *out)
{
	unsigned i;

	for (i = 0; i < p->n_iot_names; i++) {
		if (!strcmp(p->iot_names[i], name)) {
			*out = i;
			return 0;
		}
	}
	/* Only CONFIG_MAX_IOTHREADS sections can exist to match them. */
	if (p->n_iot_names == CONFIG_MAX_IOTHREADS)
		return cfgp_fail(p, "expected at most %d different IOThread names, found more",
				 CONFIG_MAX_IOTHREADS);
	snprintf(p->iot_names[p->n_iot_names], CONFIG_NAME_MAX, "%s", name);
	*out = p->n_iot_names++;
	return 0;
}

static int cfg_set_disk_iothreads(struct cfg_parser *p, const struct cfg_value *v)
{
	struct disk_config *d = p->disk;
	struct cfg_quoted q;
	unsigned i, j;
	int ret;

	if (!v->n)
		return cfgp_fail(p, "expected at least one IOThread name, found an empty array");
	if (v->n > CONFIG_MAX_QUEUES)
		return cfgp_fail(p, "expected at most %d IOThread names, found %u",
				 CONFIG_MAX_QUEUES, v->n);
	for (i = 0; i < v->n; i++) {
		ret = cfgp_check_name(p, v->elems[i].str, v->elems[i].len);
		if (!ret)
			ret = cfgp_iot_name(p, v->elems[i].str, &d->iothreads[i]);
		if (ret)
			return ret;
		for (j = 0; j < i; j++) {
			if (d->iothreads[j] == d->iothreads[i])
				return cfgp_fail(p, "expected each IOThread once, found %s twice",
						 cfg_src(&v->elems[i], &q));
		}
	}
	d->n_iothreads = v->n;
	d->line.iothreads = p->lineno;
	return 0;
}

/* ---- sections ---- */

static int cfg_open_vm(struct cfg_parser *p, const char *name, size_t len)
{
	if (p->vm_line)
		return cfgp_fail(p, "expected each section once, found [vm] again (first on line %u)",
				 p->vm_line);
	p->vm_line = p->lineno;
	p->cfg->line.vm = p->lineno;
	return 0;
}

static int cfg_open_serial(struct cfg_parser *p, const char *name, size_t len)
{
	if (p->serial_line)
		return cfgp_fail(p, "expected each section once, found [serial] again (first on line %u)",
				 p->serial_line);
	p->serial_line = p->lineno;
	return 0;
}

static int cfg_open_iothread(struct cfg_parser *p, const char *name, size_t len)
{
	struct vm_config *cfg = p->cfg;
	unsigned i;
	int ret = cfgp_check_name(p, name, len);

	if (ret)
		return ret;
	for (i = 0; i < cfg->n_iothreads; i++) {
		if (strlen(cfg->iothreads[i].name) == len && !memcmp(cfg->iothreads[i].name, name, len))
			return cfgp_fail(p, "expected each section once, found [iothread.%s] again (first on line %u)",
					 cfg->iothreads[i].name, p->iot_line[i]);
	}
	if (cfg->n_iothreads == CONFIG_MAX_IOTHREADS)
		return cfgp_fail(p, "expected at most %d iothreads, found more", CONFIG_MAX_IOTHREADS);
	p->iot = &cfg->iothreads[cfg->n_iothreads];
	*p->iot = (struct iothread_config){ .n_cpus = 0 };
	memcpy(p->iot->name, name, len);
	p->iot_line[cfg->n_iothreads++] = p->lineno;
	return 0;
}

static int cfg_open_disk(struct cfg_parser *p, const char *name, size_t len)
{
	struct vm_config *cfg = p->cfg;
	unsigned i;
	int ret = cfgp_check_name(p, name, len);

	if (ret)
		return ret;
	for (i = 0; i < cfg->n_disks; i++) {
		if (strlen(cfg->disks[i].name) == len && !memcmp(cfg->disks[i].name, name, len))
			return cfgp_fail(p, "expected each section once, found [disk.%s] again (first on line %u)",
					 cfg->disks[i].name, cfg->disks[i].line.disk);
	}
	if (cfg->n_disks == CONFIG_MAX_DISKS)
		return cfgp_fail(p, "expected at most %d disks, found more", CONFIG_MAX_DISKS);
	p->disk = &cfg->disks[cfg->n_disks++];
	*p->disk = (struct disk_config){
		.line.disk = p->lineno,
		.format = DISK_FORMAT_RAW,
		.queue_size = CFG_QUEUE_SIZE_DEFAULT,
		.cache = DISK_CACHE_WRITEBACK,
	};
	memcpy(p->disk->name, name, len);
	return 0;
}

static const struct cfg_key cfg_vm_keys[] = {
	{ "memory", CFG_INT, 0, "an integer with an optional K, M or G suffix", cfg_set_memory },
	{ "vcpus", CFG_INT, 0, "an integer", cfg_set_vcpus },
	{ "kernel", CFG_STRING, 0, "a quoted path", cfg_set_kernel },
	{ "initrd", CFG_STRING, 0, "a quoted path", cfg_set_initrd },
	{ "cmdline", CFG_STRING, 0, "a quoted string", cfg_set_cmdline },
};

static const struct cfg_key cfg_serial_keys[] = {
	{ "output", CFG_STRING, 0, "a quoted string (\"stdio\", \"none\" or a file path)",
	  cfg_set_output },
};

static const struct cfg_key cfg_iothread_keys[] = {
	{ "cpus", CFG_ARRAY, CFG_INT, "an array of host CPU numbers", cfg_set_cpus },
	{ "poll_max_ns", CFG_INT, 0, "an integer (nanoseconds)", cfg_set_poll_max_ns },
};

static const struct cfg_key cfg_disk_keys[] = {
	{ "path", CFG_STRING, 0, "a quoted path", cfg_set_disk_path },
	{ "format", CFG_STRING, 0, "a quoted string (\"raw\", \"null\", \"qcow2\" or \"auto\")",
	  cfg_set_format },
	{ "readonly", CFG_BOOL, 0, "true or false", cfg_set_readonly },
	{ "num_queues", CFG_INT, 0, "an integer", cfg_set_num_queues },
	{ "queue_size", CFG_INT, 0, "an integer", cfg_set_queue_size },
	{ "iothreads", CFG_ARRAY, CFG_STRING, "an array of quoted IOThread names",
	  cfg_set_disk_iothreads },
	{ "cache", CFG_STRING, 0, "a quoted string (\"writeback\" or \"none\")", cfg_set_cache },
	{ "serial", CFG_STRING, 0, "a quoted string", cfg_set_serial },
	{ "size", CFG_INT, 0, "an integer with an optional K, M or G suffix", cfg_set_size },
	{ "l2_cache", CFG_INT, 0, "an integer with an optional K, M or G suffix",
	  cfg_set_l2_cache },
};

static const struct cfg_section cfg_sections[] = {
	{ "vm", false, cfg_open_vm, cfg_vm_keys, ARRAY_SIZE(cfg_vm_keys) },
	{ "serial", false, cfg_open_serial, cfg_serial_keys, ARRAY_SIZE(cfg_serial_keys) },
	{ "iothread", true, cfg_open_iothread, cfg_iothread_keys, ARRAY_SIZE(cfg_iothread_keys) },
	{ "disk", true, cfg_open_disk, cfg_disk_keys, ARRAY_SIZE(cfg_disk_keys) },
};

_Static_assert(ARRAY_SIZE(cfg_vm_keys) <= CFG_KEYS_MAX, "raise CFG_KEYS_MAX");
_Static_assert(ARRAY_SIZE(cfg_serial_keys) <= CFG_KEYS_MAX, "raise CFG_KEYS_MAX");
_Static_assert(ARRAY_SIZE(cfg_iothread_keys) <= CFG_KEYS_MAX, "raise CFG_KEYS_MAX");
_Static_assert(ARRAY_SIZE(cfg_disk_keys) <= CFG_KEYS_MAX, "raise CFG_KEYS_MAX");

/* Finds the section for "kind" or "kind.name" (len bytes at s). */
static const struct cfg_section *cfg_find_section(const char *s, size_t len,
						  const char **name, size_t *name_len)
{
	const char *dot = memchr(s, '.', len);
	size_t kind_len = dot ? (size_t)(dot - s) : len;
	unsigned i;

	*name = dot ? dot + 1 : s + len;
	*name_len = len - kind_len - (dot ? 1 : 0);
	for (i = 0; i < ARRAY_SIZE(cfg_sections); i++) {
		const struct cfg_section *sec = &cfg_sections[i];

		if (strlen(sec->name) != kind_len || memcmp(sec->name, s, kind_len))
			continue;
		if (sec->named != (dot != NULL) || (sec->named && !*name_len))
			return NULL;
		return sec;
	}
	return NULL;
}

static int cfgp_open_section(struct cfg_parser *p, const char *s, size_t len)
{
	const struct cfg_section *sec;
	struct cfg_quoted q;
	const char *name;
	size_t name_len;
	int ret;

	sec = cfg_find_section(s, len, &name, &name_len);
	if (!sec)
		return cfgp_fail(p, "expected a known section ([vm], [serial], [iothread.NAME], [disk.NAME]), found %s",
				 cfg_quote(&q, "[", s, len, "]"));
	ret = sec->open(p, name, name_len);
	if (ret)
		return ret;
	p->sec = sec;
	memset(p->key_line, 0, sizeof(p->key_line));
	/* Checked by open: the name is short and made of name chars. */
	snprintf(p->prefix, sizeof(p->prefix), "%.*s", (int)len, s);
	return 0;
}

static int cfgp_header(struct cfg_parser *p)
{
	const char *s = ++p->pos, *close = memchr(s, ']', (size_t)(p->eol - s));
	const char *e = close ? close : p->eol;
	struct cfg_quoted q;

	while (s < e && cfg_is_space(*s))
		s++;
	while (e > s && cfg_is_space(e[-1]))
		e--;
	cfgp_where(p, "%s", cfg_quote(&q, "[", s, (size_t)(e - s), close ? "]" : ""));
	if (!close) {
		p->pos = p->eol;
		return cfgp_fail(p, "expected ']' to close the section header, found end of line");
	}
	p->pos = close + 1;
	cfgp_skip_space(p);
	if (!cfgp_at_end(p))
		return cfgp_fail(p, "expected end of line after the section header, found %s",
				 cfgp_found(p, &q));
	return cfgp_open_section(p, s, (size_t)(e - s));
}

static const struct cfg_key *cfg_find_key(const struct cfg_section *sec, const char *s, size_t len)
{
	unsigned i;

	for (i = 0; i < sec->n_keys; i++) {
		if (strlen(sec->keys[i].name) == len && !memcmp(sec->keys[i].name, s, len))
			return &sec->keys[i];
	}
	return NULL;
}

static int cfgp_unknown_key(struct cfg_parser *p, const char *s, size_t len)
{
	char list[256];
	size_t n = 0;
	unsigned i;
	struct cfg_quoted q;

	list[0] = '\0';
	for (i = 0; i < p->sec->n_keys && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
				      p->sec->keys[i].name);
	return cfgp_fail(p, "expected a key of [%s] (%s), found %s", p->prefix, list,
			 cfg_quote(&q, "", s, len, ""));
}

/* Reads the value of key k and checks the rest of the line. */
static int cfgp_key_value(struct cfg_parser *p, const struct cfg_key *k)
{
	unsigned idx = (unsigned)(k - p->sec->keys);
	struct cfg_value v;
	struct cfg_quoted q;
	int ret;

	cfgp_skip_space(p);
	if (!cfgp_at(p, '='))
		return cfgp_fail(p, "expected '=' after the key, found %s", cfgp_found(p, &q));
	p->pos++;
	if (p->key_line[idx])
		return cfgp_fail(p, "expected each key once per section, found %s again (first on line %u)",
				 k->name, p->key_line[idx]);
	cfgp_skip_space(p);
	ret = cfgp_at(p, '[') ? cfgp_array(p, k, &v) : cfgp_scalar(p, k, &v);
	if (ret)
		return ret;
	cfgp_skip_space(p);
	if (!cfgp_at_end(p))
		return cfgp_fail(p, "expected end of line after the value, found %s", cfgp_found(p, &q));
	ret = cfgp_check_type(p, k, &v);
	if (ret)
		return ret;
	p->key_line[idx] = p->lineno;
	return k->set(p, &v);
}

static int cfgp_assignment(struct cfg_parser *p)
{
	const char *key = p->pos;
	const struct cfg_key *k;
	struct cfg_quoted q;
	size_t len = 0;

	while (key + len < p->eol && (cfg_is_name_char(key[len]) || key[len] == '.'))
		len++;
	if (!len)
		return cfgp_fail(p, "expected a key or a section header, found %s", cfgp_found(p, &q));
	if (!p->sec) {
		cfgp_where(p, "%s", cfg_quote(&q, "", key, len, ""));
		return cfgp_fail(p, "expected a section header such as [vm] before any key, found a key");
	}
	cfgp_where(p, "%s.%s", p->prefix, cfg_quote(&q, "", key, len, ""));
	k = cfg_find_key(p->sec, key, len);
	if (!k)
		return cfgp_unknown_key(p, key, len);
	p->pos += len;
	return cfgp_key_value(p, k);
}

static int cfgp_line(struct cfg_parser *p, const char *line, const char *eol)
{
	if (eol > line && eol[-1] == '\r')
		eol--;
	p->pos = line;
	p->eol = eol;
	p->sused = 0;
	if (p->sec)
		cfgp_where(p, "[%s]", p->prefix);
	else
		cfgp_where(p, "top level");
	if (eol - line >= CONFIG_LINE_MAX)
		return cfgp_fail(p, "expected a line of at most %d bytes, found %zu bytes",
				 CONFIG_LINE_MAX - 1, (size_t)(eol - line));
	cfgp_skip_space(p);
	if (cfgp_at_end(p))
		return 0;
	if (cfgp_at(p, '['))
		return cfgp_header(p);
	return cfgp_assignment(p);
}

/* Points the next message at key of disk d, on line. */
static void cfgp_at_disk(struct cfg_parser *p, const struct disk_config *d, unsigned line,
			 const char *key)
{
	p->lineno = line;
	cfgp_where(p, "disk.%s.%s", d->name, key);
}

/* path goes with the file formats, size with null, l2_cache with the
 * formats that may be qcow2 (format may follow them). */
static int cfgp_finish_disk_format(struct cfg_parser *p, const struct disk_config *d)
{
	char size[32];

	if (d->line.l2_cache && d->format != DISK_FORMAT_QCOW2 && d->format != DISK_FORMAT_AUTO) {
		cfgp_at_disk(p, d, d->line.l2_cache, "l2_cache");
		return cfgp_fail(p, "expected no l2_cache with format = \"%s\" (only qcow2 and auto have L2 tables), found %s",
				 cfg_disk_formats[d->format],
				 cfg_size_str(d->l2_cache, size, sizeof(size)));
	}
	if (d->format == DISK_FORMAT_NULL && d->line.path) {
		cfgp_at_disk(p, d, d->line.path, "path");
		return cfgp_fail(p, "expected no path with format = \"null\", found a path");
	}
	if (d->format == DISK_FORMAT_NULL && !d->line.size) {
		cfgp_at_disk(p, d, d->line.disk, "size");
		return cfgp_fail(p, "expected size = BYTES in [disk.%s] with format = \"null\", found no size",
				 d->name);
	}
	if (d->format != DISK_FORMAT_NULL && d->line.size) {
		cfgp_at_disk(p, d, d->line.size, "size");
		return cfgp_fail(p, "expected no size with format = \"%s\" (the file's size is used), found %s",
				 cfg_disk_formats[d->format], cfg_size_str(d->size, size, sizeof(size)));
	}
	if (d->format != DISK_FORMAT_NULL && !d->line.path) {
		cfgp_at_disk(p, d, d->line.disk, "path");
		return cfgp_fail(p, "expected path = \"PATH\" in [disk.%s], found no path", d->name);
	}
	return 0;
}

/* Defaults num_queues to the vCPU count and turns iothreads names into
 * indices of cfg->iothreads, now that every section is known. */
static int cfgp_finish_disk_queues(struct cfg_parser *p, struct disk_config *d)
{
	const struct vm_config *cfg = p->cfg;
	unsigned i, k;

	if (!d->line.num_queues)
		d->num_queues = cfg->vcpus < CONFIG_MAX_QUEUES ? cfg->vcpus : CONFIG_MAX_QUEUES;
	cfgp_at_disk(p, d, d->line.iothreads, "iothreads");
	for (i = 0; i < d->n_iothreads; i++) {
		const char *name = p->iot_names[d->iothreads[i]];

		for (k = 0; k < cfg->n_iothreads && strcmp(cfg->iothreads[k].name, name); k++)
			;
		if (k == cfg->n_iothreads)
			return cfgp_fail(p, "expected the name of an [iothread.NAME] section, found \"%s\"",
					 name);
		d->iothreads[i] = k;
	}
	if (d->n_iothreads > d->num_queues)
		return cfgp_fail(p, "expected at most one IOThread per queue (num_queues = %u%s), found %u",
				 d->num_queues, d->line.num_queues ? "" : " from [vm] vcpus",
				 d->n_iothreads);
	return 0;
}

/* Checks what no single line can: required keys and defaults. eof_line
 * is where a missing [vm] is reported; a missing key is reported at its
 * section's header. */
static int cfgp_finish(struct cfg_parser *p, unsigned eof_line)
{
	char lim[32];
	unsigned i;
	int ret;

	if (!p->vm_line) {
		p->lineno = eof_line;
		cfgp_where(p, "[vm]");
		return cfgp_fail(p, "expected a [vm] section with kernel = \"PATH\", found end of file");
	}
	p->lineno = p->vm_line;
	if (!p->cfg->kernel[0]) {
		cfgp_where(p, "vm.kernel");
		return cfgp_fail(p, "expected kernel = \"PATH\" in [vm], found no kernel");
	}
	if (!p->memory_set && p->host_ram && p->cfg->memory > p->host_ram) {
		cfgp_where(p, "vm.memory");
		return cfgp_fail(p, "expected at most %s (the host's RAM), found the default 512M",
				 cfg_size_str(p->host_ram, lim, sizeof(lim)));
	}
	for (i = 0; i < p->cfg->n_disks; i++) {
		ret = cfgp_finish_disk_format(p, &p->cfg->disks[i]);
		if (!ret)
			ret = cfgp_finish_disk_queues(p, &p->cfg->disks[i]);
		if (ret)
			return ret;
	}
	return 0;
}

static int cfgp_init(struct cfg_parser *p, const char *name, uint64_t host_ram,
		     struct vm_config *cfg, char *err, size_t errlen)
{
	p->name = name;
	p->host_ram = host_ram;
	p->cfg = cfg;
	p->err = err;
	p->errlen = errlen;
	cfgp_where(p, "top level");
	if (strlen(name) >= sizeof(cfg->path))
		return cfgp_fail(p, "expected a config path of at most %d bytes, found %zu bytes",
				 PATH_MAX - 1, strlen(name));
	*cfg = (struct vm_config){
		.memory = CFG_MEMORY_DEFAULT,
		.vcpus = 1,
		.cmdline = CFG_CMDLINE_DEFAULT,
		.serial_output = SERIAL_OUT_STDIO,
	};
	memcpy(cfg->path, name, strlen(name) + 1);
	return 0;
}

int config_parse(const char *name, const char *text, size_t len, uint64_t host_ram,
		 struct vm_config *cfg, char *err, size_t errlen)
{
	struct cfg_parser p = { .lineno = 0 };
	const char *s = text, *end = text + len, *nl;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	ret = cfgp_init(&p, name, host_ram, cfg, err, errlen);
	if (ret)
		return ret;
	if (len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3))
		s += 3;
	while (s < end) {
		nl = memchr(s, '\n', (size_t)(end - s));
		p.lineno++;
		ret = cfgp_line(&p, s, nl ? nl : end);
		if (ret)
			return ret;
		s = nl ? nl + 1 : end;
	}
	return cfgp_finish(&p, len && text[len - 1] != '\n' ? p.lineno : p.lineno + 1);
}

/* ---- loading ---- */

/* Reads at most CONFIG_FILE_MAX bytes into a malloc'd buffer. */
static int cfg_read_file(const char *path, char **out, size_t *out_len)
{
	size_t len = 0;
	ssize_t n;
	char *buf;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	do {
		n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
		if (n > 0)
			len += (size_t)n;
	} while ((n > 0 && len <= CONFIG_FILE_MAX) || (n < 0 && errno == EINTR));
	if (n < 0)
		ret = -errno;
	else if (len > CONFIG_FILE_MAX)
		ret = -EFBIG;
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

static uint64_t cfg_host_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || page <= 0)
		return 0;
	return (uint64_t)pages * (uint64_t)page;
}

int config_load(const char *path, struct vm_config *cfg, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int ret;

	ret = cfg_read_file(path, &buf, &len);
	if (ret) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-ret));
		return ret;
	}
	ret = config_parse(path, buf, len, cfg_host_ram(), cfg, err, errlen);
	free(buf);
	return ret;
}
