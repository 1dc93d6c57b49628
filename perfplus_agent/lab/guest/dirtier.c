/*
 * dirtier.c - memory workload and correctness oracle of the Perf+ lab guest.
 *
 * The program owns a working set of anonymous memory, keeps dirtying it while
 * the VM is live-migrated, and can prove afterwards that no write was lost:
 * every page has a 64-bit digest in a separate array that is updated with each
 * write, so a page that a migration (or a filtering proxy) transferred stale,
 * lost or misplaced no longer matches its digest.
 *
 * Usage:
 *   dirtier [-m MiB] [-r writes_per_s] [-s same_fraction] [-z zero_fraction]
 *           [-w words_per_new_write] [-x] [-i heartbeat_s] [-p] [-S seed]
 *   defaults: -m 64 -r 1000 -s 0.5 -z 0 -w 512 -i 1.0; -r 0 = as fast as
 *   possible; -i 0 = no periodic heartbeat; -p = start paused; -S makes the
 *   memory content reproducible (the default seed is random).
 *
 * Page mode (default): each write picks a random page and does one of
 *   SAME  store back every word the page already holds (the page is dirtied,
 *         its content is unchanged: what Perf+ should not need to resend),
 *   ZERO  clear the page (probability -z),
 *   NEW   give W distinct random words of the page new non-zero values
 *         (-w W; 512 = the whole page).
 * The kind is drawn with probability -s for SAME, -z for ZERO and the rest
 * for NEW; if -s plus -z exceeds 1, SAME wins and ZERO gets what is left.
 * Random mode (-x): each write stores one random value at one random word of
 * the whole working set; it is counted as NEW.
 *
 * Digest: digest(page) = salt(page index) + sum over words of term(i, w_i)
 * (mod 2^64), where term is a bijection of the word value for a fixed word
 * index.  A write adjusts the digest by the terms of the values it reads and
 * stores, so a single changed word is always detected, and a corrupted page
 * stays detected even if it is rewritten later (nothing is re-hashed from
 * possibly bad content).
 *
 * Output lines on stdout (each one complete, written with a single write()):
 *   READY pages=<n> mib=<m>                    working set filled, workload on
 *   HB seq=<n> t=<mono s, 3 decimals> writes=<total> same=<n> new=<n>
 *      zero=<n> rate=<target writes/s>         every -i seconds and on "s"
 * Commands, one per line on stdin; the reply starts with a keyword:
 *   v         VERIFY OK <pages> | VERIFY FAIL <bad> first=<page index>
 *   c         CKSUM <16 hex digits>  (hash of all pages, read from memory)
 *   p / r     PAUSED / RESUMED
 *   R <n>     RATE <n>    (0..1000000000, 0 = flat out)
 *   S <f>     SAME <f>    Z <f>  ZERO <f>   (f in [0, 1], echoed as %g)
 *   s         an HB line now     q      BYE, then exit 0
 *   CORRUPT <page>  CORRUPTED <page>: flips a bit without updating the digest
 *             (a negative control for the oracle; never sent in normal runs)
 *   unknown command: ERR unknown <cmd>; bad or missing argument: ERR bad <cmd>;
 *   a line over 256 bytes: ERR bad line-too-long
 * Empty lines are ignored, and so is a CR before the newline.  If stdin ends
 * (and is not a tty) the workload goes on without commands.  Bad command-line
 * options: message on stderr, exit 2.
 *
 * Build: gcc -O2 -static -Wall -Wextra -o dirtier dirtier.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PAGE_BYTES 4096u
#define PAGE_WORDS (PAGE_BYTES / 8u)
#define BATCH 64u            /* writes between two clock reads */
#define SLICE_S 0.010        /* longest stretch of writing before polling stdin */
#define MAX_BACKLOG_S 0.25   /* a paced run never catches up more than this */
#define MAX_RATE 1000000000ul
#define LINE_MAX_LEN 256u

/* ---- hashing and random numbers ------------------------------------------------ */

#define GOLDEN 0x9e3779b97f4a7c15ull

/* A bijective 64-bit mixer (xor-shifts and odd multipliers are invertible). */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xd1342543de82ef95ull;
    x ^= x >> 29;
    x *= 0xaf251af3b0f025b5ull;
    x ^= x >> 32;
    return x;
}

/* Contribution of value w at word index i of a page; a bijection of w. */
static inline uint64_t word_term(unsigned i, uint64_t w)
{
    return mix64(w ^ ((uint64_t)(i + 1) * GOLDEN));
}

/* Per-page offset, so the same content at another page index does not match. */
static inline uint64_t page_salt(size_t pg)
{
    return mix64((uint64_t)pg ^ 0x5ca1ab1e0ddba11ull);
}

/* Weyl sequence through the mixer: full period 2^64, cheap, seedable. */
struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
    r->s += GOLDEN;
    return mix64(r->s);
}

static inline uint64_t rng_nonzero(struct rng *r)
{
    uint64_t v;
    do
        v = rng_next(r);
    while (v == 0);
    return v;
}

/* Uniform integer in [0, n), n > 0 (multiply-high, no modulo bias to speak of). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform double in [0, 1). */
static inline double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- output -------------------------------------------------------------------- */

/* Write all of buf; a stdout that is gone only costs the line, not the workload. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 100) < 0 && errno != EINTR)
                return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/* Print one complete protocol line (newline added) with a single write. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    char line[LINE_MAX_LEN + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
    line[len++] = '\n';
    write_all(STDOUT_FILENO, line, len);
}

static double mono_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("dirtier: clock_gettime");
        exit(1);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- configuration ------------------------------------------------------------- */

struct config {
    unsigned long mib;
    unsigned long rate;      /* writes per second, 0 = flat out */
    double same, zero;       /* fractions of SAME and ZERO writes */
    unsigned long words;     /* words per NEW write */
    bool random_words;       /* -x */
    double interval;         /* heartbeat period in seconds, 0 = off */
    bool paused;
    bool have_seed;
    uint64_t seed;
};

static void usage(FILE *out)
{
    fputs("usage: dirtier [-m MiB] [-r writes_per_s (0 = flat out)] [-s same_fraction]\n"
          "               [-z zero_fraction] [-w words_per_new_write 1..512] [-x]\n"
          "               [-i heartbeat_s (0 = off)] [-p] [-S seed]\n",
          out);
}

static bool parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    if (*s == '\0' || strchr(s, '-') != NULL)
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (unsigned long)v;
    return true;
}

static bool parse_fraction(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (*s == '\0')
        return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_seed(const char *s, uint64_t *out)
{
    char *end;
    if (*s == '\0' || strchr(s, '-') != NULL)
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

static void bad_option(int opt, const char *value, const char *want)
{
    fprintf(stderr, "dirtier: bad value '%s' for -%c (want %s)\n", value, opt, want);
    usage(stderr);
    exit(2);
}

static struct config parse_args(int argc, char **argv)
{
    struct config c = { .mib = 64, .rate = 1000, .same = 0.5, .zero = 0.0,
                        .words = PAGE_WORDS, .interval = 1.0 };
    const unsigned long max_mib = (unsigned long)(SIZE_MAX / 2 / (1024 * 1024));
    int opt;
    while ((opt = getopt(argc, argv, "m:r:s:z:w:xi:pS:h")) != -1) {
        switch (opt) {
        case 'm':
            if (!parse_ulong(optarg, 1, max_mib, &c.mib))
                bad_option(opt, optarg, "a size in MiB >= 1");
            break;
        case 'r':
            if (!parse_ulong(optarg, 0, MAX_RATE, &c.rate))
                bad_option(opt, optarg, "writes/s, 0 = flat out");
            break;
        case 's':
            if (!parse_fraction(optarg, 0.0, 1.0, &c.same))
                bad_option(opt, optarg, "a fraction in [0, 1]");
            break;
        case 'z':
            if (!parse_fraction(optarg, 0.0, 1.0, &c.zero))
                bad_option(opt, optarg, "a fraction in [0, 1]");
            break;
        case 'w':
            if (!parse_ulong(optarg, 1, PAGE_WORDS, &c.words))
                bad_option(opt, optarg, "1..512");
            break;
        case 'x':
            c.random_words = true;
            break;
        case 'i':
            if (!parse_fraction(optarg, 0.0, 86400.0, &c.interval) ||
                (c.interval > 0.0 && c.interval < 0.001))
                bad_option(opt, optarg, "seconds, 0 = off, else >= 0.001");
            break;
        case 'p':
            c.paused = true;
            break;
        case 'S':
            if (!parse_seed(optarg, &c.seed))
                bad_option(opt, optarg, "an unsigned 64-bit integer");
            c.have_seed = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default: /* getopt already said what is wrong */
            usage(stderr);
            exit(2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, "dirtier: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        exit(2);
    }
    return c;
}

/* ---- the working set ----------------------------------------------------------- */

struct counters {
    uint64_t same, fresh, zero;
};

struct workload {
    struct config cfg;
    volatile uint64_t *mem;  /* volatile: every load and store really happens */
    uint64_t *digest;        /* one per page, kept outside the working set */
    size_t npages;
    uint64_t zero_sum;       /* sum of word_term(i, 0) over a page */
    uint16_t perm[PAGE_WORDS]; /* scratch permutation for picking distinct words */
    struct rng rng;
    struct counters n;
    uint64_t hb_seq;
    /* pacing: writes done since t0 at the current rate */
    double pace_t0;
    uint64_t pace_done;
};

static inline volatile uint64_t *page_ptr(const struct workload *w, size_t pg)
{
    return w->mem + pg * PAGE_WORDS;
}

static uint64_t page_hash(const struct workload *w, size_t pg)
{
    const volatile uint64_t *p = page_ptr(w, pg);
    uint64_t h = page_salt(pg);
    for (unsigned i = 0; i < PAGE_WORDS; i++)
        h += word_term(i, p[i]);
    return h;
}

static uint64_t initial_seed(const struct config *c)
{
    uint64_t seed;
    if (c->have_seed)
        return c->seed;
    /* Early in boot the entropy pool may not be ready; the seed need not be
     * secret, so never wait for it. */
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed ||
        getrandom(&seed, sizeof seed, GRND_INSECURE) == (ssize_t)sizeof seed)
        return seed;
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

static void workload_init(struct workload *w, const struct config *cfg)
{
    memset(w, 0, sizeof *w);
    w->cfg = *cfg;
    w->npages = cfg->mib * (1024u * 1024u / PAGE_BYTES);
    size_t bytes = w->npages * PAGE_BYTES;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "dirtier: mmap %zu bytes: %s\n", bytes, strerror(errno));
        exit(1);
    }
    w->mem = mem;
    w->digest = calloc(w->npages, sizeof *w->digest);
    if (w->digest == NULL) {
        fprintf(stderr, "dirtier: no memory for %zu digests\n", w->npages);
        exit(1);
    }
    w->rng.s = mix64(initial_seed(cfg));
    for (unsigned i = 0; i < PAGE_WORDS; i++) {
        w->perm[i] = (uint16_t)i;
        w->zero_sum += word_term(i, 0);
    }
    for (size_t pg = 0; pg < w->npages; pg++) {
        volatile uint64_t *p = page_ptr(w, pg);
        uint64_t h = page_salt(pg);
        for (unsigned i = 0; i < PAGE_WORDS; i++) {
            uint64_t v = rng_nonzero(&w->rng);
            p[i] = v;
            h += word_term(i, v);
        }
        w->digest[pg] = h;
    }
}

/* SAME: load and store back every word; the digest does not change. */
static void write_same(struct workload *w, size_t pg)
{
    volatile uint64_t *p = page_ptr(w, pg);
    for (unsigned i = 0; i < PAGE_WORDS; i++)
        p[i] = p[i];
    w->n.same++;
}

/* ZERO: clear the page; the digest loses the terms of what was there. */
static void write_zero(struct workload *w, size_t pg)
{
    volatile uint64_t *p = page_ptr(w, pg);
    uint64_t removed = 0;
    for (unsigned i = 0; i < PAGE_WORDS; i++) {
        removed += word_term(i, p[i]);
        p[i] = 0;
    }
    w->digest[pg] += w->zero_sum - removed;
    w->n.zero++;
}

/* Store v at word i of page pg and adjust the page digest. */
static inline void store_word(struct workload *w, size_t pg, unsigned i, uint64_t v)
{
    volatile uint64_t *p = page_ptr(w, pg);
    uint64_t old = p[i];
    p[i] = v;
    w->digest[pg] += word_term(i, v) - word_term(i, old);
}

/* NEW: W distinct random words (partial Fisher-Yates over perm) get new values. */
static void write_new(struct workload *w, size_t pg)
{
    unsigned nwords = (unsigned)w->cfg.words;
    if (nwords == PAGE_WORDS) {
        for (unsigned i = 0; i < PAGE_WORDS; i++)
            store_word(w, pg, i, rng_nonzero(&w->rng));
    } else {
        for (unsigned k = 0; k < nwords; k++) {
            unsigned j = k + (unsigned)rng_below(&w->rng, PAGE_WORDS - k);
            uint16_t t = w->perm[k];
            w->perm[k] = w->perm[j];
            w->perm[j] = t;
            store_word(w, pg, w->perm[k], rng_nonzero(&w->rng));
        }
    }
    w->n.fresh++;
}

static void one_write(struct workload *w)
{
    if (w->cfg.random_words) {
        uint64_t g = rng_below(&w->rng, (uint64_t)w->npages * PAGE_WORDS);
        store_word(w, (size_t)(g / PAGE_WORDS), (unsigned)(g % PAGE_WORDS),
                   rng_nonzero(&w->rng));
        w->n.fresh++;
        return;
    }
    size_t pg = (size_t)rng_below(&w->rng, w->npages);
    double u = rng_unit(&w->rng);
    if (u < w->cfg.same)
        write_same(w, pg);
    else if (u < w->cfg.same + w->cfg.zero)
        write_zero(w, pg);
    else
        write_new(w, pg);
}

/* ---- pacing -------------------------------------------------------------------- */

static void pace_reset(struct workload *w, double now)
{
    w->pace_t0 = now;
    w->pace_done = 0;
}

/* Writes that are due now (only meaningful for rate > 0). */
static uint64_t pace_due(struct workload *w, double now)
{
    double rate = (double)w->cfg.rate;
    double want = (now - w->pace_t0) * rate - (double)w->pace_done;
    if (want > MAX_BACKLOG_S * rate + BATCH) {
        /* Fell far behind (stopped VM, slow vCPU): drop the backlog. */
        w->pace_t0 = now - MAX_BACKLOG_S;
        w->pace_done = 0;
        want = MAX_BACKLOG_S * rate;
    }
    return want >= 1.0 ? (uint64_t)want : 0;
}

/* Seconds until the next paced write is due (0 if one is due now). */
static double pace_wait(const struct workload *w, double now)
{
    double next = w->pace_t0 + (double)(w->pace_done + 1) / (double)w->cfg.rate;
    return next > now ? next - now : 0.0;
}

/* Write for at most SLICE_S, in batches of BATCH, honouring the target rate. */
static void write_slice(struct workload *w, double now)
{
    double end = now + SLICE_S;
    for (;;) {
        uint64_t n = BATCH;
        if (w->cfg.rate > 0) {
            uint64_t due = pace_due(w, now);
            if (due < n)
                n = due;
        }
        if (n == 0)
            return;
        for (uint64_t k = 0; k < n; k++)
            one_write(w);
        w->pace_done += n;
        now = mono_now();
        if (now >= end)
            return;
    }
}

/* ---- commands ------------------------------------------------------------------ */

static void heartbeat(struct workload *w, double now)
{
    const struct counters *n = &w->n;
    say("HB seq=%" PRIu64 " t=%.3f writes=%" PRIu64 " same=%" PRIu64 " new=%" PRIu64
        " zero=%" PRIu64 " rate=%lu",
        ++w->hb_seq, now, n->same + n->fresh + n->zero, n->same, n->fresh, n->zero,
        w->cfg.rate);
}

static void cmd_verify(const struct workload *w)
{
    size_t bad = 0, first = 0;
    for (size_t pg = 0; pg < w->npages; pg++) {
        if (page_hash(w, pg) != w->digest[pg]) {
            if (bad == 0)
                first = pg;
            bad++;
        }
    }
    if (bad == 0)
        say("VERIFY OK %zu", w->npages);
    else
        say("VERIFY FAIL %zu first=%zu", bad, first);
}

static void cmd_checksum(const struct workload *w)
{
    uint64_t h = 0;
    for (size_t pg = 0; pg < w->npages; pg++)
        h = mix64(h ^ page_hash(w, pg)) + GOLDEN;
    say("CKSUM %016" PRIx64, h);
}

/* Replace bytes that would garble the console log before echoing them. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e)
            *s = '?';
}

enum { CMD_CONTINUE, CMD_QUIT };

static int run_command(struct workload *w, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t", &save);
    if (cmd == NULL)
        return CMD_CONTINUE; /* empty or blank line */
    char *arg = strtok_r(NULL, " \t", &save);
    char *extra = strtok_r(NULL, " \t", &save);
    bool takes_arg = strcmp(cmd, "R") == 0 || strcmp(cmd, "S") == 0 ||
                     strcmp(cmd, "Z") == 0 || strcmp(cmd, "CORRUPT") == 0;
    bool known = takes_arg || (strlen(cmd) == 1 && strchr("vcprsq", cmd[0]) != NULL);
    sanitize(cmd);
    if (!known) {
        say("ERR unknown %s", cmd);
        return CMD_CONTINUE;
    }
    if (extra != NULL || (arg != NULL) != takes_arg) {
        say("ERR bad %s", cmd);
        return CMD_CONTINUE;
    }
    double now = mono_now();
    unsigned long ul;
    double f;
    switch (cmd[0]) {
    case 'v':
        cmd_verify(w);
        break;
    case 'c':
        cmd_checksum(w);
        break;
    case 'C': /* CORRUPT: flip one bit behind the digest's back */
        if (!parse_ulong(arg, 0, w->npages - 1, &ul)) {
            say("ERR bad %s", cmd);
            break;
        }
        page_ptr(w, ul)[0] ^= 1;
        say("CORRUPTED %lu", ul);
        break;
    case 'p':
        w->cfg.paused = true;
        say("PAUSED");
        break;
    case 'r':
        w->cfg.paused = false;
        pace_reset(w, now);
        say("RESUMED");
        break;
    case 'R':
        if (!parse_ulong(arg, 0, MAX_RATE, &ul)) {
            say("ERR bad %s", cmd);
            break;
        }
        w->cfg.rate = ul;
        pace_reset(w, now);
        say("RATE %lu", ul);
        break;
    case 'S':
    case 'Z':
        if (!parse_fraction(arg, 0.0, 1.0, &f)) {
            say("ERR bad %s", cmd);
            break;
        }
        *(cmd[0] == 'S' ? &w->cfg.same : &w->cfg.zero) = f;
        say("%s %g", cmd[0] == 'S' ? "SAME" : "ZERO", f);
        break;
    case 's':
        heartbeat(w, now);
        break;
    case 'q':
        say("BYE");
        return CMD_QUIT;
    }
    return CMD_CONTINUE;
}

/* Line assembly for stdin; over-long lines are dropped with an error. */
struct line_reader {
    char buf[LINE_MAX_LEN + 1];
    size_t len;
    bool overflow;
    bool open;
};

static int feed_bytes(struct workload *w, struct line_reader *lr, const char *data, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        char ch = data[k];
        if (ch != '\n' && ch != '\r') {
            if (lr->len < LINE_MAX_LEN)
                lr->buf[lr->len++] = ch;
            else
                lr->overflow = true;
            continue;
        }
        lr->buf[lr->len] = '\0';
        bool overflow = lr->overflow;
        lr->len = 0;
        lr->overflow = false;
        if (overflow)
            say("ERR bad line-too-long");
        else if (run_command(w, lr->buf) == CMD_QUIT)
            return CMD_QUIT;
    }
    return CMD_CONTINUE;
}

/* Wait up to timeout_ms for stdin and run every complete command line. */
static int service_stdin(struct workload *w, struct line_reader *lr, int timeout_ms)
{
    struct pollfd p = { .fd = lr->open ? STDIN_FILENO : -1, .events = POLLIN };
    int r = poll(&p, 1, timeout_ms);
    if (r < 0) {
        if (errno == EINTR)
            return CMD_CONTINUE;
        perror("dirtier: poll");
        exit(1);
    }
    if (r == 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
        return CMD_CONTINUE;
    char data[512];
    ssize_t n = read(STDIN_FILENO, data, sizeof data);
    if (n > 0)
        return feed_bytes(w, lr, data, (size_t)n);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return CMD_CONTINUE;
    /* End of input or a read error.  A tty can report EOF for one ^D and go
     * on; anything else is gone for good, so keep writing without commands. */
    if (n < 0 || !isatty(STDIN_FILENO))
        lr->open = false;
    return CMD_CONTINUE;
}

/* ---- main loop ----------------------------------------------------------------- */

/* Seconds to whole milliseconds, rounded up, within [0, 1000] (no libm). */
static int ms_ceil(double s)
{
    if (s <= 0.0)
        return 0;
    if (s >= 1.0)
        return 1000;
    int ms = (int)(s * 1000.0);
    return (double)ms < s * 1000.0 ? ms + 1 : ms;
}

/* How long poll() may sleep: until the next write or heartbeat, 1 s at most. */
static int idle_timeout_ms(const struct workload *w, double now, double next_hb)
{
    double wait = 1.0;
    if (!w->cfg.paused)
        wait = w->cfg.rate == 0 ? 0.0 : pace_wait(w, now);
    if (w->cfg.interval > 0.0 && next_hb - now < wait)
        wait = next_hb - now;
    return ms_ceil(wait);
}

int main(int argc, char **argv)
{
    static struct workload w;
    struct config cfg = parse_args(argc, argv);
    struct line_reader lr = { .open = true };

    workload_init(&w, &cfg);
    say("READY pages=%zu mib=%lu", w.npages, w.cfg.mib);

    double now = mono_now();
    double next_hb = now + w.cfg.interval;
    pace_reset(&w, now);
    for (;;) {
        int timeout = idle_timeout_ms(&w, now, next_hb);
        if (service_stdin(&w, &lr, timeout) == CMD_QUIT)
            return 0;
        now = mono_now();
        if (w.cfg.interval > 0.0 && now >= next_hb) {
            heartbeat(&w, now);
            next_hb += w.cfg.interval;
            if (next_hb <= now) /* missed several (stopped VM): no burst */
                next_hb = now + w.cfg.interval;
        }
        if (!w.cfg.paused) {
            write_slice(&w, now);
            now = mono_now();
        }
    }
}
