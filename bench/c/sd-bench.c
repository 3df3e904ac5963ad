/*
 * sd-bench: the C peer of `sheepdog bench` — libsheepdog (sd_vdi_read /
 * sd_vdi_write) at a fixed queue depth.
 *
 *   sd-bench -a HOST:PORT --vdi NAME --op read|write --pattern seq|random
 *            --bs BYTES --qd N (--total BYTES | --seconds S) [--warmup S]
 *            [--timeout S (default 60; 0 = none)]
 *
 * N threads (N = --qd), each calling sd_vdi_read / sd_vdi_write synchronously
 * on its own buffer (allocated once; for writes filled with the same pattern
 * as cli/bench/engine.ts). The offsets are engine.ts's: bs-aligned over
 * floor(vdi_size / bs) blocks, sequential (one shared cursor, wrapping) or
 * uniformly random (one shared xorshift32, seed 0x2545f491); --total B means
 * ceil(B / bs) requests; --seconds S stops issuing after S seconds. --warmup S
 * runs the same workload S seconds first, unmeasured, the offsets going on
 * where it stops. Prints one JSON line, the keys of `sheepdog bench --json`:
 * op, pattern, bs, qd, bytes, seconds, mibps, iops, p50_us, p99_us,
 * max_rss_mb, cpu_ms. Exit 0; 1 on an error; 64 on bad arguments.
 */
#define _GNU_SOURCE
#include <sheepdog/sheepdog.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

enum { OP_READ, OP_WRITE };
enum { PAT_SEQ, PAT_RANDOM };

static int op, pattern;
static uint64_t bs, total, blocks;
static double seconds = -1, warmup;
static int qd;

/* The shared issue state (engine.ts: issued, cursor, seed). */
static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t issued, max_ops, cursor;
static uint32_t seed = 0x2545f491;
static double deadline;

/* --timeout: no reply for this long is an error (libsheepdog has none; `sheepdog bench` defaults to 60 s). */
static double stall_seconds = 60;
static volatile double last_progress;
static volatile int closing; /* sd_vdi_close / sd_disconnect under way: the watchdog keeps off the socket */
static const char *address;

static struct sd_cluster *cluster;
static struct sd_vdi *vdi;

struct worker {
	pthread_t th;
	int index;
	char *buf;
	int record;
	uint64_t *lat; /* ns */
	size_t nlat, cap;
	uint64_t done;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* The next offset, or -1 when the phase is over (max_ops issued). */
static int64_t next_offset(void)
{
	int64_t off;
	pthread_mutex_lock(&gen_lock);
	if (issued >= max_ops) {
		pthread_mutex_unlock(&gen_lock);
		return -1;
	}
	issued++;
	if (pattern == PAT_SEQ) {
		off = (int64_t)(cursor * bs);
		cursor = cursor + 1 == blocks ? 0 : cursor + 1;
	} else {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		off = (int64_t)((seed % blocks) * bs);
	}
	pthread_mutex_unlock(&gen_lock);
	return off;
}

static const char *result_text(int r)
{
	switch (r) {
	case 0x01: return "unknown error";
	case 0x02: return "no object found";
	case 0x03: return "I/O error";
	case 0x05: return "invalid parameters";
	case 0x06: return "system error";
	case 0x07: return "VDI is locked";
	case 0x08: return "no VDI found";
	case 0x0E: return "tag not found";
	case 0x11: return "sheepdog is shutting down";
	case 0x16: return "waiting for the cluster to be formatted";
	case 0x17: return "waiting for other nodes to join";
	case 0x19: return "sheepdog is stopped doing I/O (halt)";
	case 0x1A: return "object is read-only";
	default: return "error";
	}
}

static void *run(void *arg)
{
	struct worker *w = arg;
	double now = now_s();
	while (now < deadline) {
		int64_t off = next_offset();
		if (off < 0)
			break;
		uint64_t t0 = now_ns();
		int r = op == OP_READ ? sd_vdi_read(cluster, vdi, w->buf, bs, off)
				      : sd_vdi_write(cluster, vdi, w->buf, bs, off);
		uint64_t t1 = now_ns();
		if (r != 0) {
			/* libsheepdog leaves the other calls in flight blocked: no clean way out */
			fprintf(stderr, "sd-bench: %s at offset %lld: %s (0x%x)\n", op == OP_READ ? "read" : "write",
				(long long)off, result_text(r), r);
			_exit(1);
		}
		now = (double)t1 * 1e-9;
		last_progress = now;
		if (w->record) {
			if (w->nlat == w->cap) {
				w->cap = w->cap ? w->cap * 2 : 65536;
				w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
				if (!w->lat) {
					fprintf(stderr, "sd-bench: out of memory\n");
					exit(1);
				}
			}
			w->lat[w->nlat++] = t1 - t0 > 0 ? t1 - t0 : 1;
		}
		w->done++;
	}
	return NULL;
}

static char pipe_msg[512]; /* written by the SIGPIPE handler (built before: no stdio in a handler) */
static size_t pipe_msg_len;

static void on_sigpipe(int sig)
{
	(void)sig;
	if (write(2, pipe_msg, pipe_msg_len) < 0) {
		/* nothing more to do */
	}
	_exit(1);
}

/*
 * libsheepdog 1.0 does not notice a connection closed under reads in flight
 * (its reply thread takes EOF for an empty read, and every caller waits on
 * its eventfd forever), nor a sheep that stops answering: the watchdog sees
 * both (POLLRDHUP on the socket; no call completed for --timeout seconds).
 */
static void *watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		usleep(100 * 1000);
		if (closing || !cluster)
			continue;
		struct pollfd p = { .fd = cluster->sockfd, .events = POLLRDHUP };
		if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) && !closing) {
			fprintf(stderr, "sd-bench: %s closed the connection\n", address);
			_exit(1);
		}
		if (stall_seconds > 0 && now_s() - last_progress > stall_seconds && !closing) {
			fprintf(stderr, "sd-bench: no reply from %s for %g s (--timeout)\n", address, stall_seconds);
			_exit(1);
		}
	}
	return NULL;
}

static uint64_t run_phase(struct worker *ws, uint64_t ops, double until, int record)
{
	last_progress = now_s();
	pthread_mutex_lock(&gen_lock);
	issued = 0;
	max_ops = ops;
	deadline = until;
	pthread_mutex_unlock(&gen_lock);
	for (int i = 0; i < qd; i++) {
		ws[i].record = record;
		ws[i].done = 0;
		if (pthread_create(&ws[i].th, NULL, run, &ws[i]) != 0) {
			fprintf(stderr, "sd-bench: cannot start thread %d\n", i);
			exit(1);
		}
	}
	uint64_t done = 0;
	for (int i = 0; i < qd; i++) {
		pthread_join(ws[i].th, NULL);
		done += ws[i].done;
	}
	return done;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* engine.ts fillPattern: xorshift32 words, little-endian. */
static void fill_pattern(char *buf, uint64_t len, uint32_t s)
{
	uint32_t x = s | 1;
	for (uint64_t i = 0; i + 4 <= len; i += 4) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (char)x;
		buf[i + 1] = (char)(x >> 8);
		buf[i + 2] = (char)(x >> 16);
		buf[i + 3] = (char)(x >> 24);
	}
	for (uint64_t i = len & ~3ULL; i < len; i++)
		buf[i] = (char)0xa5;
}

/* Sizes as `sheepdog bench`: a whole number, optionally with a fraction, and K/M/G/T/P (binary), optional "B"/"iB". */
static int parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	unsigned long long whole = 0, frac = 0, div = 1;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return -1;
		whole = whole * 10 + (unsigned)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (div > UINT64_MAX / 100)
				return -1;
			frac = frac * 10 + (unsigned)(*p - '0');
			div *= 10;
		}
	}
	int shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	case 'p': case 'P': shift = 50; p++; break;
	default: break;
	}
	if (*p == 'i' || *p == 'I')
		p++;
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0')
		return -1;
	if (whole > (UINT64_MAX >> shift) >> 1)
		return -1;
	uint64_t fr = (frac << shift);
	if (fr % div != 0)
		return -1; /* not a whole number of bytes */
	*out = (whole << shift) + fr / div;
	return 0;
}

static void usage(const char *msg, const char *arg)
{
	if (msg)
		fprintf(stderr, "sd-bench: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	fprintf(stderr, "usage: sd-bench -a HOST:PORT --vdi NAME --op read|write --pattern seq|random --bs BYTES --qd N\n"
			"                (--total BYTES | --seconds S) [--warmup S] [--timeout S]\n");
	exit(64);
}

static double parse_seconds(const char *s, const char *name)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || !isfinite(v))
		usage(name, s);
	return v;
}

int main(int argc, char **argv)
{
	char *addr = NULL, *name = NULL;
	int have_op = 0, have_pat = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage("missing value or unknown option", a);
		i++;
		if (!strcmp(a, "-a") || !strcmp(a, "--address"))
			addr = v;
		else if (!strcmp(a, "--vdi"))
			name = v;
		else if (!strcmp(a, "--op")) {
			if (!strcmp(v, "read"))
				op = OP_READ;
			else if (!strcmp(v, "write"))
				op = OP_WRITE;
			else
				usage("--op must be read or write", v);
			have_op = 1;
		} else if (!strcmp(a, "--pattern")) {
			if (!strcmp(v, "seq"))
				pattern = PAT_SEQ;
			else if (!strcmp(v, "random"))
				pattern = PAT_RANDOM;
			else
				usage("--pattern must be seq or random", v);
			have_pat = 1;
		} else if (!strcmp(a, "--bs")) {
			if (parse_size(v, &bs) < 0 || bs < 1 || bs > (1u << 30))
				usage("--bs must be a size of 1 byte .. 1G", v);
		} else if (!strcmp(a, "--qd")) {
			char *end;
			long n = strtol(v, &end, 10);
			if (*end || end == v || n < 1 || n > 1024)
				usage("--qd must be a whole number in 1..1024", v);
			qd = (int)n;
		} else if (!strcmp(a, "--total")) {
			if (parse_size(v, &total) < 0 || total < 1)
				usage("--total must be a size of at least 1 byte", v);
		} else if (!strcmp(a, "--seconds")) {
			seconds = parse_seconds(v, "--seconds must be a positive number");
			if (!(seconds > 0))
				usage("--seconds must be a positive number", v);
		} else if (!strcmp(a, "--timeout")) {
			stall_seconds = parse_seconds(v, "--timeout must be a number of seconds (0 = none)");
		} else if (!strcmp(a, "--warmup")) {
			warmup = parse_seconds(v, "--warmup must be a number of seconds (0 = none)");
		} else
			usage("unknown option", a);
	}
	if (!addr)
		usage("-a HOST:PORT is required", NULL);
	if (!name)
		usage("--vdi is required", NULL);
	if (!have_op)
		usage("--op must be read or write", NULL);
	if (!have_pat)
		usage("--pattern must be seq or random", NULL);
	if (!bs)
		usage("--bs is required", NULL);
	if (!qd)
		usage("--qd is required", NULL);
	if ((total == 0) == (seconds < 0))
		usage("give exactly one of --total and --seconds", NULL);

	address = addr;
	int k = snprintf(pipe_msg, sizeof(pipe_msg), "sd-bench: %s closed the connection (a write failed: EPIPE)\n", addr);
	pipe_msg_len = k < 0 ? 0 : (size_t)k < sizeof(pipe_msg) ? (size_t)k : sizeof(pipe_msg) - 1;
	signal(SIGPIPE, on_sigpipe);
	last_progress = now_s();
	pthread_t wd;
	if (pthread_create(&wd, NULL, watchdog, NULL) != 0) {
		fprintf(stderr, "sd-bench: cannot start the watchdog thread\n");
		return 1;
	}
	pthread_detach(wd);
	cluster = sd_connect(addr);
	if (!cluster) {
		fprintf(stderr, "sd-bench: cannot connect to %s: %s (0x%x)\n", addr, result_text(errno), errno);
		return 1;
	}
	vdi = sd_vdi_open(cluster, name);
	if (!vdi) {
		fprintf(stderr, "sd-bench: cannot open VDI %s: %s (0x%x)\n", name, result_text(errno), errno);
		closing = 1;
		sd_disconnect(cluster);
		return 1;
	}
	uint64_t size = vdi->inode->vdi_size;
	if (vdi->inode->block_size_shift != 0 && vdi->inode->block_size_shift != 22)
		fprintf(stderr, "sd-bench: warning: VDI %s has %u-byte objects; libsheepdog assumes 4 MiB\n", name,
			1u << vdi->inode->block_size_shift);
	blocks = size / bs;
	if (blocks < 1) {
		fprintf(stderr, "sd-bench: --bs %llu is larger than VDI %s (%llu bytes)\n", (unsigned long long)bs, name,
			(unsigned long long)size);
		closing = 1;
		sd_vdi_close(cluster, vdi);
		sd_disconnect(cluster);
		return 1;
	}

	struct worker *ws = calloc((size_t)qd, sizeof(*ws));
	if (!ws) {
		fprintf(stderr, "sd-bench: out of memory\n");
		return 1;
	}
	for (int i = 0; i < qd; i++) {
		ws[i].index = i;
		ws[i].buf = malloc(bs);
		if (!ws[i].buf) {
			fprintf(stderr, "sd-bench: out of memory (%d buffers of %llu bytes)\n", qd, (unsigned long long)bs);
			return 1;
		}
		if (op == OP_WRITE)
			fill_pattern(ws[i].buf, bs, 0x51ed27u + (uint32_t)i);
		else
			memset(ws[i].buf, 0, bs);
	}

	if (warmup > 0)
		run_phase(ws, UINT64_MAX, now_s() + warmup, 0);

	uint64_t ops = total ? (total + bs - 1) / bs : UINT64_MAX;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double start = now_s();
	uint64_t completed = run_phase(ws, ops, seconds < 0 ? INFINITY : start + seconds, 1);
	double elapsed = now_s() - start;
	getrusage(RUSAGE_SELF, &ru1);

	size_t n = 0;
	for (int i = 0; i < qd; i++)
		n += ws[i].nlat;
	uint64_t *lat = malloc((n ? n : 1) * sizeof(*lat));
	if (!lat) {
		fprintf(stderr, "sd-bench: out of memory\n");
		return 1;
	}
	n = 0;
	for (int i = 0; i < qd; i++) {
		memcpy(lat + n, ws[i].lat, ws[i].nlat * sizeof(*lat));
		n += ws[i].nlat;
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	/* the smallest latency that p% of the requests do not exceed (HDR histogram's percentile) */
#define PCT(p) (n ? (double)lat[(size_t)ceil((p) / 100.0 * (double)n) - 1] / 1000.0 : 0.0)
	double p50 = PCT(50), p99 = PCT(99);
	double cpu_ms = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e3 +
			(double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e3 +
			(double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e3 +
			(double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3;
	uint64_t bytes = completed * bs;

	closing = 1;
	sd_vdi_close(cluster, vdi);
	sd_disconnect(cluster);

	printf("{\"op\":\"%s\",\"pattern\":\"%s\",\"bs\":%llu,\"qd\":%d,\"bytes\":%llu,\"seconds\":%.4f,"
	       "\"mibps\":%.2f,\"iops\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_rss_mb\":%.1f,\"cpu_ms\":%.1f}\n",
	       op == OP_READ ? "read" : "write", pattern == PAT_SEQ ? "seq" : "random", (unsigned long long)bs, qd,
	       (unsigned long long)bytes, elapsed, (double)bytes / 1048576.0 / elapsed, (double)completed / elapsed, p50,
	       p99, (double)ru1.ru_maxrss / 1024.0, cpu_ms);
	return 0;
}
