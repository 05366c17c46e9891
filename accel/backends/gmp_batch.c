/* he-accel's native batch engine for the CPU backend: one C call per batch, on GMP's public
 * mpn layer.
 *
 * Numbers travel as packed little-endian blobs of a fixed byte width per element (the Python
 * side's packing), copied into zero-padded limb buffers here. Every function checks its inputs'
 * ranges and returns -1 when all is well, else the index of the first bad element (the caller
 * raises the same error as the gmpy2 path).
 *
 * Public operands (ciphertexts, public scalars): GMP's fastest calls (mpn_mul, toom included,
 * and mpn_tdiv_qr). Secret operands (the DJN exponent r and what it selects): constant time:
 * mpn_sec_tabselect reads every table entry, mpn_sec_mul (schoolbook, no data-dependent
 * branches) multiplies, and the Montgomery reduction below is addmul_1 rows plus
 * mpn_cnd_sub_n, with no branch or address that depends on the values.
 *
 * Built at run time by accel/backends/_native.py (cc -O3 -shared -lgmp) and loaded with ctypes.
 */
#include <gmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEA_OK (-1)
#define HEA_NOMEM (-2)

/* x (width bytes, little-endian) into limbs[0..nl), zero-padded. */
static void load(mp_limb_t *limbs, mp_size_t nl, const uint8_t *x, size_t width) {
    memset(limbs, 0, (size_t)nl * sizeof(mp_limb_t));
    size_t bytes = width < (size_t)nl * sizeof(mp_limb_t) ? width : (size_t)nl * sizeof(mp_limb_t);
    memcpy(limbs, x, bytes);
}

/* limbs[0..nl) into width bytes (the value must fit, which the callers guarantee). */
static void store(uint8_t *out, size_t width, const mp_limb_t *limbs, mp_size_t nl) {
    size_t bytes = (size_t)nl * sizeof(mp_limb_t);
    if (bytes >= width) {
        memcpy(out, limbs, width);
    } else {
        memcpy(out, limbs, bytes);
        memset(out + bytes, 0, width - bytes);
    }
}

/* Is x (width bytes) below m (nl limbs), and nonzero where asked (ciphertexts)? Loads x into
 * tmp. A validity check of public data: it may branch. */
static int in_range(const uint8_t *x, size_t width, const mp_limb_t *m, mp_size_t nl, mp_limb_t *tmp, int nonzero) {
    size_t cap = (size_t)nl * sizeof(mp_limb_t);
    for (size_t i = cap; i < width; i++)
        if (x[i]) return 0;
    load(tmp, nl, x, width);
    return mpn_cmp(tmp, m, nl) < 0 && !(nonzero && mpn_zero_p(tmp, nl));
}

/* out[i] = a[i] * b[i] mod m: homomorphic addition. */
long hea_mulmod(const uint8_t *mod, size_t mod_width, const uint8_t *a, const uint8_t *b, uint8_t *out,
                size_t count, size_t width, int *bad_operand) {
    mp_size_t nl = (mp_size_t)((mod_width + 7) / 8);
    mp_limb_t *buf = malloc((size_t)(8 * nl + 1) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *x = m + nl, *y = x + nl, *p = y + nl, *q = p + 2 * nl, *r = q + 2 * nl + 1;
    load(m, nl, mod, mod_width);
    mp_size_t ml = nl;
    while (ml > 1 && m[ml - 1] == 0) ml--;
    long result = HEA_OK;
    for (size_t i = 0; i < count; i++) {
        if (!in_range(a + i * width, width, m, nl, x, 1)) { *bad_operand = 0; result = (long)i; break; }
        if (!in_range(b + i * width, width, m, nl, y, 1)) { *bad_operand = 1; result = (long)i; break; }
        mpn_mul_n(p, x, y, nl);
        memset(r, 0, (size_t)nl * sizeof(mp_limb_t));
        mpn_tdiv_qr(q, r, 0, p, 2 * nl, m, ml);
        store(out + i * width, width, r, nl);
    }
    free(buf);
    return result;
}

/* Grouped products: out[g] = prod of group g's elements mod m (1 for an empty group), the
 * groups being consecutive runs of a (counts[g] elements each). A group's first element starts
 * its accumulator, so a group of k costs k - 1 multiplications: FATE's histogram updates sum
 * groups of a few ciphertexts, where the product loop's 1 * a[0] would cost a quarter more. */
long hea_product_groups(const uint8_t *mod, size_t mod_width, const uint8_t *a, const size_t *counts,
                        size_t groups, size_t width, uint8_t *out) {
    mp_size_t nl = (mp_size_t)((mod_width + 7) / 8);
    mp_limb_t *buf = malloc((size_t)(7 * nl + 1) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *acc = m + nl, *x = acc + nl, *p = x + nl, *q = p + 2 * nl; /* q: 2 nl + 1 */
    load(m, nl, mod, mod_width);
    mp_size_t ml = nl;
    while (ml > 1 && m[ml - 1] == 0) ml--;
    long result = HEA_OK;
    size_t at = 0;
    for (size_t g = 0; g < groups && result == HEA_OK; g++) {
        memset(acc, 0, (size_t)nl * sizeof(mp_limb_t));
        acc[0] = 1;
        for (size_t k = 0; k < counts[g]; k++, at++) {
            if (!in_range(a + at * width, width, m, nl, k ? x : acc, 1)) { result = (long)at; break; }
            if (!k) continue;
            mpn_mul_n(p, acc, x, nl);
            memset(acc, 0, (size_t)nl * sizeof(mp_limb_t));
            mpn_tdiv_qr(q, acc, 0, p, 2 * nl, m, ml);
        }
        if (result == HEA_OK) store(out + g * width, width, acc, nl);
    }
    free(buf);
    return result;
}

/* out = prod a[i] mod m (1 for no elements): homomorphic sum, one group of them all. */
long hea_product(const uint8_t *mod, size_t mod_width, const uint8_t *a, size_t count, size_t width,
                 uint8_t *out) {
    return hea_product_groups(mod, mod_width, a, &count, 1, width, out);
}

/* out[i] = c[i] * (1 + m[i] n) mod n^2, computed as c + n ((c mod n) m mod n) mod n^2: since
 * c m n mod n^2 = n (c m mod n), the work is two half-size products and divisions instead of
 * one full-size product and division. */
long hea_add_plain(const uint8_t *n_bytes, size_t pw, const uint8_t *n2_bytes, size_t cw, const uint8_t *cs,
                   const uint8_t *ms, uint8_t *out, size_t count, int *bad_operand) {
    mp_size_t hl = (mp_size_t)((pw + 7) / 8), nl = (mp_size_t)((cw + 7) / 8);
    mp_limb_t *buf = malloc((size_t)(7 * nl + 6 * hl + 4) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    /* q holds quotients of up to nl + 1 limbs (n has its top limb set: nlen == hl) */
    mp_limb_t *n = buf, *n2 = n + hl, *c = n2 + nl, *mv = c + nl, *t = mv + hl, *q = t + hl,
              *cr = q + 2 * nl + 1, *prod = cr + hl, *s = prod + 2 * hl, *sum = s + nl + 1;
    load(n, hl, n_bytes, pw);
    load(n2, nl, n2_bytes, cw);
    mp_size_t nlen = hl, n2len = nl;
    while (nlen > 1 && n[nlen - 1] == 0) nlen--;
    while (n2len > 1 && n2[n2len - 1] == 0) n2len--;
    long result = HEA_OK;
    for (size_t i = 0; i < count; i++) {
        if (!in_range(cs + i * cw, cw, n2, nl, c, 1)) { *bad_operand = 0; result = (long)i; break; }
        if (!in_range(ms + i * pw, pw, n, hl, mv, 0)) { *bad_operand = 1; result = (long)i; break; }
        /* m's length, so that small plaintexts (the usual encodings: 64 bits) cost one limb */
        mp_size_t mlen = hl;
        while (mlen > 0 && mv[mlen - 1] == 0) mlen--;
        if (mlen == 0) { /* c (1 + 0 n) = c */
            store(out + i * cw, cw, c, nl);
            continue;
        }
        /* cr = c mod n */
        memset(cr, 0, (size_t)hl * sizeof(mp_limb_t));
        mpn_tdiv_qr(q, cr, 0, c, n2len, n, nlen);
        /* t = cr * m mod n */
        mpn_mul(prod, cr, hl, mv, mlen);
        memset(t, 0, (size_t)hl * sizeof(mp_limb_t));
        mpn_tdiv_qr(q, t, 0, prod, hl + mlen, n, nlen);
        /* s = n t (< n^2), sum = c + s, minus n^2 once if needed */
        memset(s, 0, (size_t)(nl + 1) * sizeof(mp_limb_t));
        mpn_mul_n(s, n, t, hl);
        mp_limb_t cy = mpn_add_n(sum, c, s, nl);
        if (cy || mpn_cmp(sum, n2, nl) >= 0) mpn_sub_n(sum, sum, n2, nl);
        store(out + i * cw, cw, sum, nl);
    }
    free(buf);
    return result;
}

/* -- Montgomery arithmetic modulo an odd m of nl limbs, R = 2^(64 nl), constant time ---------- */

/* -m^-1 mod 2^64 (Newton's iteration; m is public). */
static mp_limb_t neg_inverse(mp_limb_t m0) {
    mp_limb_t inv = m0; /* correct to 3 bits for odd m0 */
    for (int i = 0; i < 6; i++) inv *= 2 - m0 * inv;
    return (mp_limb_t)0 - inv;
}

/* r = t R^-1 mod m for t < m R (t has 2 nl limbs and is destroyed). No value-dependent branch
 * or address: nl rows of addmul_1, one addition, one conditional subtraction. */
static void redc(mp_limb_t *r, mp_limb_t *t, const mp_limb_t *m, mp_size_t nl, mp_limb_t minv,
                 mp_limb_t *scratch) {
    for (mp_size_t i = 0; i < nl; i++) {
        mp_limb_t u = t[i] * minv;
        t[i] = mpn_addmul_1(t + i, m, nl, u); /* t[i] becomes 0 here: keep the row's carry in it */
    }
    mp_limb_t cy = mpn_add_n(r, t + nl, t, nl);
    mp_limb_t borrow = mpn_sub_n(scratch, r, m, nl);
    /* r + cy R < 2m: subtract m when cy is set or r >= m (no borrow) */
    mpn_cnd_sub_n(cy | (borrow ^ 1), r, r, m, nl);
}

/* r = a b R^-1 mod m, constant time. */
static void montmul(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b, const mp_limb_t *m, mp_size_t nl,
                    mp_limb_t minv, mp_limb_t *prod, mp_limb_t *scratch) {
    mpn_sec_mul(prod, a, nl, b, nl, scratch);
    redc(r, prod, m, nl, minv, scratch);
}

static size_t ct_scratch_limbs(mp_size_t nl, mp_size_t hl) {
    size_t s = (size_t)nl, x;
    if ((x = (size_t)mpn_sec_mul_itch(nl, nl)) > s) s = x;
    if ((x = (size_t)mpn_sec_mul_itch(hl, hl)) > s) s = x;
    if ((x = (size_t)mpn_sec_add_1_itch(nl)) > s) s = x;
    return s;
}

/* The DJN comb table in Montgomery form: T[k][d] = hs^(d 2^(w k)) R mod m for k < windows,
 * d < 2^w, each entry nl limbs, entries of a window contiguous (the block mpn_sec_tabselect
 * scans). hs and m are public, so this uses the fast public-operand calls. */
long hea_djn_table(const uint8_t *mod, size_t mod_width, const uint8_t *hs, size_t hs_width, int windows, int w,
                   mp_limb_t *table) {
    mp_size_t nl = (mp_size_t)((mod_width + 7) / 8);
    size_t size = (size_t)1 << w;
    mp_limb_t *buf = malloc((size_t)(9 * nl + 2) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *base = m + nl, *cur = base + nl, *p = cur + nl, *q = p + 2 * nl, *shifted = q + 2 * nl + 1;
    load(m, nl, mod, mod_width);
    mp_size_t ml = nl;
    while (ml > 1 && m[ml - 1] == 0) ml--;
    if (!(m[0] & 1)) { free(buf); return 0; } /* Montgomery needs an odd modulus */
    load(base, nl, hs, hs_width < (size_t)nl * 8 ? hs_width : (size_t)nl * 8);
    if (mpn_cmp(base, m, nl) >= 0) { free(buf); return 0; }
    for (int k = 0; k < windows; k++) {
        mp_limb_t *row = table + (size_t)k * size * nl;
        memset(cur, 0, (size_t)nl * sizeof(mp_limb_t));
        cur[0] = 1; /* base^0 */
        for (size_t d = 0; d < size; d++) {
            /* row[d] = cur R mod m */
            memset(shifted, 0, (size_t)nl * sizeof(mp_limb_t));
            memcpy(shifted + nl, cur, (size_t)nl * sizeof(mp_limb_t));
            memset(row + d * nl, 0, (size_t)nl * sizeof(mp_limb_t));
            mpn_tdiv_qr(q, row + d * nl, 0, shifted, 2 * nl, m, ml);
            /* cur = cur base mod m */
            mpn_mul_n(p, cur, base, nl);
            memset(cur, 0, (size_t)nl * sizeof(mp_limb_t));
            mpn_tdiv_qr(q, cur, 0, p, 2 * nl, m, ml);
        }
        memcpy(base, cur, (size_t)nl * sizeof(mp_limb_t)); /* base^(2^w): the next window's base */
    }
    free(buf);
    return HEA_OK;
}

/* The w-bit digit k of r (pw bytes, little-endian): fixed positions, no value-dependent branch. */
static size_t digit(const uint8_t *r, size_t pw, size_t bit, int w) {
    size_t v = 0;
    for (int j = 0; j < w; j++) {
        size_t b = bit + (size_t)j, byte = b >> 3;
        size_t x = byte < pw ? r[byte] : 0;
        v |= ((x >> (b & 7)) & 1u) << j;
    }
    return v;
}

/* out = the entry `which` of a window's table (size entries of nl limbs), reading every entry:
 * the same access pattern and work for every index. A mask replaces mpn_sec_tabselect so that
 * the compiler vectorises the loop, for the widest vector unit the CPU has (cloned and chosen
 * at load time on x86-64): 2-4x faster than mpn_sec_tabselect on 64-limb entries. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
/* g = 1 + m n (< n^2, nl limbs) for the pw-byte plaintext m at src, or 1 where src is NULL;
   constant time. mv (hl limbs), prod (2 hl) and scratch (ct_scratch_limbs) are the caller's. */
static void one_plus_mn(mp_limb_t *g, mp_size_t nl, const uint8_t *src, size_t pw, const mp_limb_t *n, mp_size_t hl,
                        mp_limb_t *mv, mp_limb_t *prod, mp_limb_t *scratch) {
    memset(g, 0, (size_t)nl * sizeof(mp_limb_t));
    if (!src) {
        g[0] = 1;
        return;
    }
    load(mv, hl, src, pw);
    mpn_sec_mul(prod, mv, hl, n, hl, scratch);
    memcpy(g, prod, (size_t)(2 * hl < nl ? 2 * hl : nl) * sizeof(mp_limb_t));
    mpn_sec_add_1(g, g, nl, 1, scratch);
}

static void select_ct(mp_limb_t *out, const mp_limb_t *tab, mp_size_t nl, size_t size, size_t which) {
    memset(out, 0, (size_t)nl * sizeof(mp_limb_t));
    for (size_t d = 0; d < size; d++) {
        mp_limb_t mask = (mp_limb_t)0 - (mp_limb_t)(((uint64_t)(d ^ which) - 1) >> 63);
        const mp_limb_t *row = tab + d * (size_t)nl;
        for (mp_size_t j = 0; j < nl; j++) out[j] |= row[j] & mask;
    }
}

/* Elements per block of the comb loop: each window's table is read for a whole block, so it
 * stays in the core's cache while the block's accumulators do too (32 x 512 bytes at 2048 bits). */
#define DJN_BLOCK 32

/* out[i] = (1 + m[i] n) hs^r[i] mod n^2 (or hs^r[i] alone when ms is NULL), hs^r from the comb
 * table: one constant-time selection and Montgomery multiplication per window, no squarings.
 * The last multiplication, by 1 + m n (or by 1), also leaves the Montgomery domain.
 * bad_operand: 0 for an exponent longer than windows * w bits, 1 for a plaintext >= n; those
 * checks come first, so nothing is written for a refused batch. */
long hea_djn_encrypt(const uint8_t *n_bytes, size_t pw, const uint8_t *mod, size_t cw, const mp_limb_t *table,
                     int windows, int w, const uint8_t *rs, const uint8_t *ms, uint8_t *out, size_t count,
                     int *bad_operand) {
    mp_size_t nl = (mp_size_t)((cw + 7) / 8), hl = (mp_size_t)((pw + 7) / 8);
    size_t size = (size_t)1 << w, span = (size_t)windows * (size_t)w;
    size_t scratch_n = ct_scratch_limbs(nl, hl);
    mp_limb_t *buf = malloc((size_t)((5 + DJN_BLOCK) * nl + 2 * hl + scratch_n) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *entry = m + nl, *g = entry + nl, *prod = g + nl, *n = prod + 2 * nl, *mv = n + hl,
              *scratch = mv + hl, *accs = scratch + scratch_n;
    load(m, nl, mod, cw);
    load(n, hl, n_bytes, pw);
    mp_limb_t minv = neg_inverse(m[0]);
    for (size_t i = 0; i < count; i++) { /* validity first (public facts about valid input) */
        const uint8_t *r = rs + i * pw;
        uint8_t extra = 0;
        for (size_t b = span; b < pw * 8; b++) extra |= (uint8_t)((r[b >> 3] >> (b & 7)) & 1u);
        if (extra) { *bad_operand = 0; free(buf); return (long)i; }
        if (ms && !in_range(ms + i * pw, pw, n, hl, mv, 0)) { *bad_operand = 1; free(buf); return (long)i; }
    }
    for (size_t start = 0; start < count; start += DJN_BLOCK) {
        size_t block = count - start < DJN_BLOCK ? count - start : DJN_BLOCK;
        for (size_t i = 0; i < block; i++)
            select_ct(accs + i * nl, table, nl, size, digit(rs + (start + i) * pw, pw, 0, w));
        for (int k = 1; k < windows; k++) {
            const mp_limb_t *tab = table + (size_t)k * size * nl;
            for (size_t i = 0; i < block; i++) {
                select_ct(entry, tab, nl, size, digit(rs + (start + i) * pw, pw, (size_t)k * w, w));
                montmul(accs + i * nl, accs + i * nl, entry, m, nl, minv, prod, scratch);
            }
        }
        for (size_t i = 0; i < block; i++) {
            one_plus_mn(g, nl, ms ? ms + (start + i) * pw : NULL, pw, n, hl, mv, prod, scratch);
            montmul(accs + i * nl, accs + i * nl, g, m, nl, minv, prod, scratch);
            store(out + (start + i) * cw, cw, accs + i * nl, nl);
        }
    }
    free(buf);
    return HEA_OK;
}

/* -- the sum by Montgomery reduction (public operands: may branch) --------------------------- */

/* Up to this many limbs a Montgomery reduction (REDC: addmul_1 rows) beats a division
 * (mpn_tdiv_qr) for the sum's one reduction per element; above it the division's subquadratic
 * recursion wins. Measured on AMD EPYC with GMP 6.2: 0.49 vs 0.78 us at 32 limbs, 2.08 vs
 * 2.29 us at 64, 4.91 vs 4.45 us at 96. */
#define REDC_PRODUCT_MAX_LIMBS 64

/* r = t R^-1 mod m for t < m R (t: 2 ml limbs, destroyed), R = 2^(64 ml). */
static void redc_public(mp_limb_t *r, mp_limb_t *t, const mp_limb_t *m, mp_size_t ml, mp_limb_t minv) {
    for (mp_size_t i = 0; i < ml; i++)
        t[i] = mpn_addmul_1(t + i, m, ml, t[i] * minv); /* t[i] becomes 0: keep the row's carry */
    mp_limb_t cy = mpn_add_n(r, t + ml, t, ml);
    if (cy || mpn_cmp(r, m, ml) >= 0) mpn_sub_n(r, r, m, ml);
}

/* hea_product's result by Montgomery reduction: acc = REDC(acc a_i) leaves prod a_i R^-count,
 * which one multiplication by R^count mod m (GMP's powm of 2: a public exponent) fixes. Runs
 * hea_product for an even modulus or one above REDC_PRODUCT_MAX_LIMBS. */
long hea_product_redc(const uint8_t *mod, size_t mod_width, const uint8_t *a, size_t count, size_t width,
                      uint8_t *out) {
    mp_size_t nl = (mp_size_t)((mod_width + 7) / 8);
    mp_limb_t *buf = malloc((size_t)(7 * nl + 1) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *acc = m + nl, *x = acc + nl, *t = x + nl, *q = t + 2 * nl; /* q: 2 nl + 1 */
    load(m, nl, mod, mod_width);
    mp_size_t ml = nl;
    while (ml > 1 && m[ml - 1] == 0) ml--;
    if (!(m[0] & 1) || ml > REDC_PRODUCT_MAX_LIMBS || m[ml - 1] == 0) {
        free(buf);
        return hea_product(mod, mod_width, a, count, width, out);
    }
    mp_limb_t minv = neg_inverse(m[0]);
    memset(acc, 0, (size_t)nl * sizeof(mp_limb_t));
    acc[0] = 1;
    for (size_t i = 0; i < count; i++) {
        if (!in_range(a + i * width, width, m, nl, x, 1)) { free(buf); return (long)i; }
        mpn_mul_n(t, acc, x, ml); /* x < m: its limbs above ml are zero */
        redc_public(acc, t, m, ml, minv);
    }
    mpz_t fix, e, modz;
    mpz_roinit_n(modz, m, ml);
    mpz_init_set_ui(fix, 2);
    mpz_init_set_ui(e, 64);
    mpz_mul_ui(e, e, (unsigned long)ml);
    mpz_mul_ui(e, e, (unsigned long)count);
    mpz_powm(fix, fix, e, modz);
    memset(t, 0, (size_t)(2 * ml) * sizeof(mp_limb_t));
    if (mpz_size(fix)) mpn_mul(t, acc, ml, mpz_limbs_read(fix), (mp_size_t)mpz_size(fix));
    memset(acc, 0, (size_t)nl * sizeof(mp_limb_t));
    mpn_tdiv_qr(q, acc, 0, t, 2 * ml, m, ml);
    store(out, width, acc, nl);
    mpz_clear(fix);
    mpz_clear(e);
    free(buf);
    return HEA_OK;
}

/* Scratch-free size checks for the loader: the limb size this build assumes. */
int hea_limb_bits(void) { return GMP_NUMB_BITS; }
#include "djn_ifma.c"
