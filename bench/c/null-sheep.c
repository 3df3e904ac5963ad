/*
 * null-sheep: a Sheepdog 1.0 gateway that answers every request at once and
 * stores nothing, so that a benchmark against it measures the client alone.
 *
 *   null-sheep [--host 127.0.0.1] [--port 0] [--vdi-size BYTES (default 4G)]
 *
 * Prints "listening HOST:PORT" on stdout once ready, serves until SIGINT or
 * SIGTERM, then exits 0. Pipelined requests on any number of connections:
 * by default a thread per connection with blocking sockets (--threads; the
 * cheaper of the two in server CPU per request, see README.md), or with
 * --epoll one thread running one epoll loop over non-blocking sockets.
 * Written for this repo from the protocol description (docs, protocol/);
 * no Sheepdog code.
 *
 * Every VDI name exists: its vid is sheep's hash of the name, its inode has
 * the name, vdi_size = --vdi-size, 4 MiB objects, 2 copies and every
 * data_vdi_id slot set to the vid (fully allocated: reads are real reads,
 * writes are overwrites). Data objects read as zeros; writes are consumed and
 * acknowledged. README.md lists the opcodes answered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ protocol */

#define HDR 48
#define OP_CREATE_AND_WRITE_OBJ 0x01
#define OP_READ_OBJ 0x02
#define OP_WRITE_OBJ 0x03
#define OP_REMOVE_OBJ 0x04
#define OP_DISCARD_OBJ 0x05
#define OP_NEW_VDI 0x11
#define OP_LOCK_VDI 0x12
#define OP_RELEASE_VDI 0x13
#define OP_GET_VDI_INFO 0x14
#define OP_READ_VDIS 0x15
#define OP_FLUSH_VDI 0x16
#define OP_GET_CLUSTER_DEFAULT 0x18
#define OP_GET_NODE_LIST 0x82
#define OP_STAT_SHEEP 0x86
#define OP_STAT_CLUSTER 0x87
#define OP_READ_PEER 0xA4
#define OP_WRITE_PEER 0xA5
#define OP_CREATE_AND_WRITE_PEER 0xA7
#define OP_DELETE_CACHE 0xB0
#define OP_CLUSTER_INFO 0xBE
#define OP_READ_DEL_VDIS 0xC9

#define FLAG_CMD_WRITE 0x01

#define RES_SUCCESS 0x00
#define RES_NO_OBJ 0x02
#define RES_INVALID_PARMS 0x05
#define RES_NO_TAG 0x0E

#define VDI_BIT (1ULL << 63)
#define VMSTATE_BIT (1ULL << 62)
#define VDI_ATTR_BIT (1ULL << 61)
#define VDI_BTREE_BIT (1ULL << 60)
#define LEDGER_BIT (1ULL << 59)

#define NAME_LEN 256
#define INODE_HEADER 4664 /* offsetof(struct sd_inode, data_vdi_id) */
#define INODE_SLOTS (1u << 20)
#define INODE_SIZE 12587576u /* sizeof(struct sd_inode) */
#define OBJ_SHIFT 22
#define COPIES 2
#define EPOCH 1
#define NODE_SIZE 80 /* struct sd_node on the wire */
#define EPOCH_LOG 48 /* struct epoch_log without its nodes */
#define CLUSTER_INFO_NODES 48

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static inline void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* sd_hash_vdi: FNV-1a 64 of the name, low 24 bits (0 is never a vid). */
static uint32_t hash_vdi(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	uint32_t vid = (uint32_t)(h & 0xffffff);
	return vid ? vid : 1;
}

/* ------------------------------------------------------------ state */

static uint64_t vdi_size = 4ULL << 30;
static uint32_t nr_objs; /* data_vdi_id slots in use */
static uint8_t node_ip[4];
static uint16_t node_port;
static uint64_t boot_ctime;

/* Zeros for every read body (never written: the kernel backs it with its zero page). */
#define ZERO_LEN (4u << 20)
static uint8_t zeros[ZERO_LEN];

/* The VDIs seen so far (by name): each has its inode header + index, built once. */
struct vdi {
	struct vdi *next;
	uint32_t vid;
	uint8_t *inode; /* INODE_HEADER + nr_objs * 4 bytes */
	size_t len;
	char name[NAME_LEN + 1];
};
static struct vdi *vdis;

/* READ_VDIS: the vid-in-use bitmap (LSB first), a bit per VDI seen so far. */
#define BITMAP_LEN ((1u << 24) / 8)
static uint8_t vdi_inuse[BITMAP_LEN];

static pthread_mutex_t vdi_lock = PTHREAD_MUTEX_INITIALIZER; /* --threads */

static struct vdi *vdi_by_name_locked(const char *name)
{
	for (struct vdi *v = vdis; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	struct vdi *v = calloc(1, sizeof(*v));
	if (!v)
		abort();
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->vid = hash_vdi(v->name);
	v->len = INODE_HEADER + (size_t)nr_objs * 4;
	v->inode = calloc(1, v->len);
	if (!v->inode)
		abort();
	uint8_t *in = v->inode;
	memcpy(in, v->name, strlen(v->name));
	put64(in + 512, boot_ctime << 32);	/* create_time */
	put64(in + 536, vdi_size);		/* vdi_size */
	in[552] = 0;				/* copy_policy */
	in[553] = 0;				/* store_policy */
	in[554] = COPIES;			/* nr_copies */
	in[555] = OBJ_SHIFT;			/* block_size_shift */
	put32(in + 556, 1);			/* snap_id */
	put32(in + 560, v->vid);		/* vdi_id */
	for (uint32_t i = 0; i < nr_objs; i++)
		put32(in + INODE_HEADER + 4 * i, v->vid);
	vdi_inuse[v->vid / 8] |= (uint8_t)(1u << (v->vid % 8));
	v->next = vdis;
	vdis = v;
	return v;
}

static struct vdi *vdi_by_name(const char *name)
{
	pthread_mutex_lock(&vdi_lock);
	struct vdi *v = vdi_by_name_locked(name);
	pthread_mutex_unlock(&vdi_lock);
	return v;
}

static struct vdi *vdi_by_vid(uint32_t vid)
{
	struct vdi *found = NULL;
	pthread_mutex_lock(&vdi_lock);
	for (struct vdi *v = vdis; v; v = v->next)
		if (v->vid == vid) {
			found = v;
			break;
		}
	pthread_mutex_unlock(&vdi_lock);
	return found;
}

/* Small reply bodies built once at start. */
static uint8_t node_list[NODE_SIZE];
static uint8_t epoch_log[EPOCH_LOG + NODE_SIZE];
static uint8_t cluster_info_head[CLUSTER_INFO_NODES + NODE_SIZE];

static void build_bodies(void)
{
	uint8_t *n = node_list;
	/* 24 bytes of rb_node, then node_id: addr[16] (IPv4-mapped), port */
	memcpy(n + 24 + 12, node_ip, 4);
	put16(n + 40, node_port);
	memcpy(n + 42 + 12, node_ip, 4); /* io_addr */
	put16(n + 58, node_port);	  /* io_port */
	put16(n + 64, 128);		  /* nr_vnodes */
	put32(n + 68, (uint32_t)node_ip[0] | node_ip[1] << 8 | node_ip[2] << 16 | (uint32_t)node_ip[3] << 24); /* zone */
	put64(n + 72, 1ULL << 40);	  /* space */

	uint8_t *e = epoch_log;
	put64(e + 0, boot_ctime << 32);
	put64(e + 8, boot_ctime);
	put32(e + 16, EPOCH);
	put32(e + 20, 1);
	e[25] = COPIES;
	memcpy(e + 32, "plain", 5);
	memcpy(e + EPOCH_LOG, node_list, NODE_SIZE);

	uint8_t *c = cluster_info_head;
	c[0] = 0x0a;		/* proto_ver */
	put16(c + 2, 1);	/* nr_nodes */
	put32(c + 4, EPOCH);
	put64(c + 8, boot_ctime << 32);
	c[18] = COPIES;
	c[20] = 1;		/* status: OK */
	c[21] = OBJ_SHIFT;
	memcpy(c + 25, "plain", 5);
	memcpy(c + CLUSTER_INFO_NODES, node_list, NODE_SIZE);
}

/* ------------------------------------------------------------ connections */

/* An output segment: bytes in the connection's arena (ptr == NULL: at off) or a stable buffer. */
struct seg {
	const uint8_t *ptr;
	size_t off;
	size_t len;
};

#define INBUF 65536
#define MAX_PENDING (64u << 20) /* stop reading a connection whose replies pile up */

struct conn {
	int fd;
	/* input */
	uint8_t in[INBUF];
	size_t in_len;	  /* bytes in `in` */
	size_t in_pos;	  /* parsed up to here */
	int have_req;	  /* a request header is in `req`, its payload is being consumed */
	uint8_t req[HDR];
	uint32_t body_left; /* payload bytes still to consume */
	uint8_t body[2 * NAME_LEN]; /* the first bytes of the payload (names) */
	uint32_t body_got;
	/* output */
	struct seg *segs;
	size_t nsegs, seg0, segcap;
	uint8_t *arena;
	size_t arena_len, arena_cap;
	size_t pending; /* bytes queued, not yet written */
	uint32_t events;
};

static int epfd;
static unsigned long long nreq;
static unsigned char seen_op[256];
static unsigned long long op_count[256];
static int verbose;
static int threaded = 1; /* default: a thread per connection, blocking sockets; --epoll: one epoll loop */

static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("null-sheep: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		logmsg("out of memory");
		exit(1);
	}
	return q;
}

static void push_seg(struct conn *c, const uint8_t *ptr, size_t off, size_t len)
{
	if (len == 0)
		return;
	if (c->nsegs == c->segcap) {
		c->segcap = c->segcap ? c->segcap * 2 : 256;
		c->segs = xrealloc(c->segs, c->segcap * sizeof(*c->segs));
	}
	/* merge with the previous arena segment when contiguous */
	if (!ptr && c->nsegs > c->seg0) {
		struct seg *p = &c->segs[c->nsegs - 1];
		if (!p->ptr && p->off + p->len == off) {
			p->len += len;
			c->pending += len;
			return;
		}
	}
	c->segs[c->nsegs++] = (struct seg){ ptr, off, len };
	c->pending += len;
}

static uint8_t *arena_alloc(struct conn *c, size_t n, size_t *off)
{
	if (c->arena_len + n > c->arena_cap) {
		size_t cap = c->arena_cap ? c->arena_cap : 16384;
		while (cap < c->arena_len + n)
			cap *= 2;
		c->arena = xrealloc(c->arena, cap);
		c->arena_cap = cap;
	}
	*off = c->arena_len;
	c->arena_len += n;
	return c->arena + *off;
}

static void push_zeros(struct conn *c, size_t len)
{
	while (len > 0) {
		size_t n = len < ZERO_LEN ? len : ZERO_LEN;
		push_seg(c, zeros, 0, n);
		len -= n;
	}
}

/* Queue a reply header (and copy `small` bytes of body after it, in the arena). */
static uint8_t *reply(struct conn *c, uint32_t result, uint32_t data_length, const void *small, size_t small_len)
{
	size_t off;
	uint8_t *h = arena_alloc(c, HDR + small_len, &off);
	memset(h, 0, HDR);
	h[0] = c->req[0];
	h[1] = c->req[1];
	put32(h + 4, EPOCH);
	memcpy(h + 8, c->req + 8, 4); /* id */
	put32(h + 12, data_length);
	put32(h + 16, result);
	if (small_len)
		memcpy(h + HDR, small, small_len);
	push_seg(c, NULL, off, HDR + small_len);
	return h;
}

/* The body of a read of `len` bytes at `off` from an object whose first `have` bytes are `base`; zeros past it. */
static void push_object(struct conn *c, const uint8_t *base, size_t have, uint64_t off, size_t len)
{
	if (off < have) {
		size_t n = have - off < len ? have - off : len;
		push_seg(c, base + off, 0, n);
		off += n;
		len -= n;
	}
	push_zeros(c, len);
}

static int is_data_oid(uint64_t oid)
{
	return !(oid & (VDI_BIT | VMSTATE_BIT | VDI_ATTR_BIT | VDI_BTREE_BIT | LEDGER_BIT));
}

static void vdi_reply(struct conn *c, uint32_t result, uint32_t vid)
{
	uint8_t *h = reply(c, result, 0, NULL, 0);
	put32(h + 24, vid);
	h[32] = COPIES;
	h[33] = OBJ_SHIFT;
}

/* The request in c->req is complete (payload consumed): answer it. */
static void handle(struct conn *c)
{
	const uint8_t *q = c->req;
	uint8_t op = q[1];
	uint16_t flags = get16(q + 2);
	uint32_t len = get32(q + 12);
	uint64_t oid = get64(q + 16);
	uint32_t off = get32(q + 40);
	__atomic_fetch_add(&nreq, 1, __ATOMIC_RELAXED); /* --threads: several handlers */
	__atomic_fetch_add(&op_count[op], 1, __ATOMIC_RELAXED);
	if (verbose > 1 || (verbose && !seen_op[op]))
		logmsg("op 0x%02x flags 0x%x len %u oid %016llx off %u", op, flags, len, (unsigned long long)oid, off);
	if (!seen_op[op])
		seen_op[op] = 1;

	switch (op) {
	case OP_READ_OBJ:
	case OP_READ_PEER:
		if (is_data_oid(oid)) {
			reply(c, RES_SUCCESS, len, NULL, 0);
			push_zeros(c, len);
		} else if (oid & VDI_BIT) {
			struct vdi *v = vdi_by_vid((uint32_t)(oid >> 32) & 0xffffff);
			if (!v) {
				reply(c, RES_NO_OBJ, 0, NULL, 0);
				break;
			}
			if ((uint64_t)off + len > INODE_SIZE)
				len = off >= INODE_SIZE ? 0 : INODE_SIZE - off;
			reply(c, RES_SUCCESS, len, NULL, 0);
			push_object(c, v->inode, v->len, off, len);
		} else {
			reply(c, RES_NO_OBJ, 0, NULL, 0);
		}
		break;
	case OP_WRITE_OBJ:
	case OP_CREATE_AND_WRITE_OBJ:
	case OP_WRITE_PEER:
	case OP_CREATE_AND_WRITE_PEER:
	case OP_REMOVE_OBJ:
	case OP_DISCARD_OBJ:
	case OP_RELEASE_VDI:
	case OP_DELETE_CACHE:
	case OP_STAT_SHEEP:
		reply(c, RES_SUCCESS, 0, NULL, 0);
		break;
	case OP_FLUSH_VDI:
		reply(c, RES_INVALID_PARMS, 0, NULL, 0); /* as sheep 1.0: nothing to flush */
		break;
	case OP_GET_VDI_INFO:
	case OP_LOCK_VDI: {
		char name[NAME_LEN + 1];
		uint32_t n = c->body_got < NAME_LEN ? c->body_got : NAME_LEN;
		memcpy(name, c->body, n);
		name[n] = '\0';
		int tagged = c->body_got > NAME_LEN && c->body[NAME_LEN] != 0;
		uint32_t snapid = get32(q + 32);
		if (name[0] == '\0')
			vdi_reply(c, RES_INVALID_PARMS, 0);
		else if (tagged || snapid != 0)
			vdi_reply(c, RES_NO_TAG, 0); /* no snapshots here */
		else
			vdi_reply(c, RES_SUCCESS, vdi_by_name(name)->vid);
		break;
	}
	case OP_GET_CLUSTER_DEFAULT: {
		uint8_t *h = reply(c, RES_SUCCESS, 0, NULL, 0);
		h[20] = COPIES;
		h[22] = OBJ_SHIFT;
		break;
	}
	case OP_GET_NODE_LIST: {
		uint32_t n = len < NODE_SIZE ? 0 : NODE_SIZE;
		uint8_t *h = reply(c, RES_SUCCESS, n, node_list, n);
		put32(h + 20, 1); /* nr_nodes */
		break;
	}
	case OP_STAT_CLUSTER: {
		/* epoch_log[] newest first, stride 48 + nodes_nr * 80: one epoch, one node */
		uint32_t nodes_nr = get32(q + 40);
		uint32_t stride = EPOCH_LOG + (nodes_nr > 0 ? nodes_nr : 1) * NODE_SIZE;
		uint32_t n = len < stride ? len : stride; /* one epoch; as much of it as was asked for */
		uint32_t k = n < sizeof(epoch_log) ? n : (uint32_t)sizeof(epoch_log);
		reply(c, RES_SUCCESS, n, epoch_log, k);
		push_zeros(c, n - k);
		break;
	}
	case OP_READ_VDIS:
	case OP_READ_DEL_VDIS: {
		uint32_t n = len < BITMAP_LEN ? len : BITMAP_LEN;
		reply(c, RES_SUCCESS, n, NULL, 0);
		if (op == OP_READ_VDIS)
			push_seg(c, vdi_inuse, 0, n);
		else
			push_zeros(c, n);
		break;
	}
	case OP_CLUSTER_INFO: {
		uint32_t n = len < sizeof(cluster_info_head) ? len : sizeof(cluster_info_head);
		reply(c, RES_SUCCESS, len, cluster_info_head, n);
		push_zeros(c, len - n);
		break;
	}
	default:
		if (seen_op[op] == 1) {
			logmsg("unknown opcode 0x%02x (flags 0x%x, data_length %u): answered INVALID_PARMS", op, flags, len);
			seen_op[op] = 2;
		}
		reply(c, RES_INVALID_PARMS, 0, NULL, 0);
		break;
	}
}

/* Does this request's payload need to be kept (names), or can it be dropped unread? */
static int keeps_body(uint8_t op)
{
	return op == OP_GET_VDI_INFO || op == OP_LOCK_VDI;
}

static void set_events(struct conn *c)
{
	uint32_t ev = 0;
	if (c->pending < MAX_PENDING)
		ev |= EPOLLIN;
	if (c->pending > 0)
		ev |= EPOLLOUT;
	if (ev != c->events) {
		struct epoll_event e = { .events = ev, .data.ptr = c };
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
			logmsg("epoll_ctl: %s", strerror(errno));
		c->events = ev;
	}
}

static void close_conn(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->segs);
	free(c->arena);
	free(c);
}

/* Write what is queued. 0: ok (maybe partial), -1: the connection is gone. */
static int flush_conn(struct conn *c)
{
	while (c->seg0 < c->nsegs) {
		struct iovec iov[IOV_MAX];
		int n = 0;
		for (size_t i = c->seg0; i < c->nsegs && n < IOV_MAX; i++, n++) {
			struct seg *s = &c->segs[i];
			iov[n].iov_base = (void *)(s->ptr ? s->ptr + s->off : c->arena + s->off);
			iov[n].iov_len = s->len;
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->pending -= (size_t)w;
		while (w > 0) {
			struct seg *s = &c->segs[c->seg0];
			if ((size_t)w >= s->len) {
				w -= (ssize_t)s->len;
				c->seg0++;
			} else {
				s->off += (size_t)w;
				s->len -= (size_t)w;
				w = 0;
			}
		}
	}
	if (c->seg0 == c->nsegs) {
		c->seg0 = c->nsegs = 0;
		c->arena_len = 0;
	}
	return 0;
}

/* Parse what is in c->in. */
static void parse(struct conn *c)
{
	for (;;) {
		if (c->have_req) {
			uint32_t avail = (uint32_t)(c->in_len - c->in_pos);
			uint32_t n = c->body_left < avail ? c->body_left : avail;
			if (n && keeps_body(c->req[1]) && c->body_got < sizeof(c->body)) {
				uint32_t k = sizeof(c->body) - c->body_got;
				if (k > n)
					k = n;
				memcpy(c->body + c->body_got, c->in + c->in_pos, k);
				c->body_got += k;
			}
			c->in_pos += n;
			c->body_left -= n;
			if (c->body_left > 0)
				break;
			handle(c);
			c->have_req = 0;
		}
		if (c->in_len - c->in_pos < HDR)
			break;
		memcpy(c->req, c->in + c->in_pos, HDR);
		c->in_pos += HDR;
		c->have_req = 1;
		c->body_got = 0;
		uint16_t flags = get16(c->req + 2);
		c->body_left = (flags & FLAG_CMD_WRITE) ? get32(c->req + 12) : 0;
	}
	/* keep the unparsed tail at the start */
	if (c->in_pos == c->in_len) {
		c->in_pos = c->in_len = 0;
	} else if (c->in_pos > 0 && (c->in_len - c->in_pos < HDR || c->in_pos > INBUF / 2)) {
		memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
		c->in_len -= c->in_pos;
		c->in_pos = 0;
	}
}

/* Read from the socket. -1: closed or failed. */
static int read_conn(struct conn *c)
{
	for (int rounds = 0; rounds < 16 && c->pending < MAX_PENDING; rounds++) {
		ssize_t r;
		if (c->have_req && c->body_left > 0 && !keeps_body(c->req[1]) && c->in_pos == c->in_len) {
			/* a payload nobody needs: drop it in the kernel (MSG_TRUNC), no copy */
			uint32_t want = c->body_left;
			r = recv(c->fd, NULL, want, MSG_TRUNC | MSG_DONTWAIT);
			if (r > 0) {
				c->body_left -= (uint32_t)r;
				if (c->body_left == 0) {
					handle(c);
					c->have_req = 0;
				}
				if ((uint32_t)r < want)
					return 0;
				continue;
			}
		} else {
			if (c->in_len == INBUF) {
				/* full of one unfinished header?  cannot happen: parse() keeps < HDR or moves */
				memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
				c->in_len -= c->in_pos;
				c->in_pos = 0;
			}
			size_t room = INBUF - c->in_len;
			r = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
			if (r > 0) {
				c->in_len += (size_t)r;
				parse(c);
				if ((size_t)r < room)
					return 0; /* drained: epoll (level-triggered) says when there is more */
				continue;
			}
		}
		if (r == 0)
			return -1;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EINTR)
			continue;
		return -1;
	}
	return 0;
}

/* The default (--threads): one thread per connection, blocking reads and writes. */
static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	for (;;) {
		ssize_t r;
		if (c->have_req && c->body_left > 0 && !keeps_body(c->req[1]) && c->in_pos == c->in_len) {
			r = recv(c->fd, NULL, c->body_left, MSG_TRUNC);
			if (r > 0) {
				c->body_left -= (uint32_t)r;
				if (c->body_left == 0) {
					handle(c);
					c->have_req = 0;
				}
			}
		} else {
			r = recv(c->fd, c->in + c->in_len, INBUF - c->in_len, 0);
			if (r > 0) {
				c->in_len += (size_t)r;
				parse(c);
			}
		}
		if (r == 0 || (r < 0 && errno != EINTR))
			break;
		if (c->pending > 0 && flush_conn(c) < 0)
			break;
	}
	close(c->fd);
	free(c->segs);
	free(c->arena);
	free(c);
	return NULL;
}

/* ------------------------------------------------------------ main */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	int shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: null-sheep [--host 127.0.0.1] [--port 0] [--vdi-size BYTES (default 4G)] [--threads | --epoll] [-v|-vv]\n");
	exit(64);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	long port = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--host") == 0 && v) {
			host = v;
			i++;
		} else if (strcmp(a, "--port") == 0 && v) {
			char *end;
			port = strtol(v, &end, 10);
			if (*end || port < 0 || port > 65535)
				usage();
			i++;
		} else if (strcmp(a, "--vdi-size") == 0 && v) {
			if (parse_size(v, &vdi_size) < 0 || vdi_size == 0 || vdi_size > ((uint64_t)INODE_SLOTS << OBJ_SHIFT)) {
				fprintf(stderr, "null-sheep: --vdi-size must be 1 .. 4T (a flat 4 MiB-object VDI), got %s\n", v);
				exit(64);
			}
			i++;
		} else if (strcmp(a, "-v") == 0) {
			verbose = 1;
		} else if (strcmp(a, "--threads") == 0) {
			threaded = 1;
		} else if (strcmp(a, "--epoll") == 0) {
			threaded = 0;
		} else if (strcmp(a, "-vv") == 0) {
			verbose = 2;
		} else {
			usage();
		}
	}
	nr_objs = (uint32_t)((vdi_size + (1ULL << OBJ_SHIFT) - 1) >> OBJ_SHIFT);
	boot_ctime = (uint64_t)time(NULL);

	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "null-sheep: --host must be an IPv4 address, got %s\n", host);
		exit(64);
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) {
		fprintf(stderr, "null-sheep: cannot listen on %s:%ld: %s\n", host, port, strerror(errno));
		exit(1);
	}
	socklen_t sl = sizeof(sa);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	memcpy(node_ip, &sa.sin_addr, 4);
	node_port = ntohs(sa.sin_port);
	build_bodies();

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || sfd < 0) {
		fprintf(stderr, "null-sheep: epoll/signalfd: %s\n", strerror(errno));
		exit(1);
	}
	static int lmark, smark;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &lmark };
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e);
	e.data.ptr = &smark;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &e);

	printf("listening %s:%u\n", host, node_port);
	fflush(stdout);

	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(epfd, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			logmsg("epoll_wait: %s", strerror(errno));
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &smark) {
				if (verbose) {
					logmsg("%llu requests served", nreq);
					for (int k = 0; k < 256; k++)
						if (op_count[k])
							logmsg("  opcode 0x%02x: %llu", k, op_count[k]);
				}
				return 0;
			}
			if (p == &lmark) {
				for (;;) {
					int fd = accept4(lfd, NULL, NULL, (threaded ? 0 : SOCK_NONBLOCK) | SOCK_CLOEXEC);
					if (fd < 0)
						break;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					struct conn *c = calloc(1, sizeof(*c));
					if (!c)
						abort();
					c->fd = fd;
					if (threaded) {
						pthread_t th;
						pthread_attr_t at;
						pthread_attr_init(&at);
						pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
						if (pthread_create(&th, &at, conn_thread, c) != 0) {
							logmsg("cannot start a connection thread");
							close(fd);
							free(c);
						}
						pthread_attr_destroy(&at);
						continue;
					}
					c->events = EPOLLIN;
					struct epoll_event ce = { .events = EPOLLIN, .data.ptr = c };
					epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ce);
				}
				continue;
			}
			struct conn *c = p;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				if (read_conn(c) < 0) {
					close_conn(c);
					continue;
				}
			}
			if (c->pending > 0 && flush_conn(c) < 0) {
				close_conn(c);
				continue;
			}
			set_events(c);
		}
	}
}
