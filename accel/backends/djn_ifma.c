/* DJN comb encryption on AVX-512 IFMA: almost-Montgomery multiplication in 52-bit digits.
 *
 * Included at the end of gmp_batch.c (one translation unit: it shares load/store/in_range/digit/
 * neg_inverse and the ct_scratch_limbs sizes). Our own code after the published idea (Gueron and
 * Krasnov's AMM with vpmadd52luq/vpmadd52huq; OpenSSL's rsaz-avx512 does the same for RSA):
 *
 * - A number modulo m (odd, public) is D digits of 52 bits in 64-bit lanes, D a multiple of 8
 *   (one zmm register per 8 digits), R = 2^(52 D) > 2m. The comb table is stored in this layout
 *   and in Montgomery form (T[k][d] = hs^(d 2^(w k)) R mod m), so a window costs one selection
 *   and one multiplication, no conversion.
 * - amm(a, b) = a b R^-1 mod m, almost reduced: for a < 2m and b < m the result is < 2m
 *   (a b / R < m because R > 2m), so the comb chain never reduces; one constant-time
 *   subtraction at the end does. Digit by digit of b: the products' low halves are added to the
 *   accumulator lanes, the accumulator shifts down one digit (valignq), then the high halves
 *   are added. Lane 0 lives in a scalar register that takes the full 104-bit products of the
 *   lowest digits, so the next digit of the reduction factor y comes from a short scalar chain.
 *   The lanes are not carried during the loop (each takes at most 4 D values below 2^52, which
 *   fits 64 bits for D <= 24 x 8); the carries are propagated once at the end.
 * - Constant time: every loop runs a count fixed by D, w and the batch; the secret exponent's
 *   digit only feeds a vector compare whose mask merges each table entry (all entries read);
 *   the multiplication has no branch at all. valgrind cannot decode AVX-512, so the same source
 *   compiles with HEA_IFMA_EMULATE, where each vector operation is a plain branch-free C loop
 *   over 8 lanes: tests/ct_harness.c runs that build under memcheck with the exponents marked
 *   secret (and checks its results), so the algorithm's branches and addresses are checked; the
 *   compiled intrinsics' code is the part not checked by a tool.
 */

#define HEA_IFMA_MAX_ZMM 24 /* 192 digits: moduli up to 9,982 bits (keys up to 4,991 bits) */
#define HEA_UNSUPPORTED (-3)
#define MASK52 ((uint64_t)0xFFFFFFFFFFFFF)

#if defined(HEA_IFMA_EMULATE)
/* The vector operations as branch-free C over 8 lanes (for valgrind and machines without IFMA). */
typedef struct { uint64_t l[8]; } v8;
#define IFMA_TARGET
#define IFMA_UNROLL /* left to the compiler: fully unrolled, 24 sizes of scalar lanes build slowly */
static inline v8 v_zero(void) { v8 r; for (int i = 0; i < 8; i++) r.l[i] = 0; return r; }
static inline v8 v_set1(uint64_t x) { v8 r; for (int i = 0; i < 8; i++) r.l[i] = x; return r; }
static inline v8 v_load(const uint64_t *p) { v8 r; memcpy(r.l, p, sizeof r.l); return r; }
static inline void v_store(uint64_t *p, v8 a) { memcpy(p, a.l, sizeof a.l); }
static inline v8 v_madd52lo(v8 acc, v8 a, v8 b) {
    for (int i = 0; i < 8; i++)
        acc.l[i] += (uint64_t)((unsigned __int128)(a.l[i] & MASK52) * (b.l[i] & MASK52)) & MASK52;
    return acc;
}
static inline v8 v_madd52hi(v8 acc, v8 a, v8 b) {
    for (int i = 0; i < 8; i++)
        acc.l[i] += (uint64_t)(((unsigned __int128)(a.l[i] & MASK52) * (b.l[i] & MASK52)) >> 52);
    return acc;
}
/* (hi:lo) shifted down one lane: lanes 1..7 of lo, then lane 0 of hi */
static inline v8 v_shift_in(v8 hi, v8 lo) {
    v8 r;
    for (int i = 0; i < 7; i++) r.l[i] = lo.l[i + 1];
    r.l[7] = hi.l[0];
    return r;
}
static inline uint64_t v_lane0(v8 a) { return a.l[0]; }
/* a's lanes where x == y (a whole-vector choice), else keep acc's */
static inline v8 v_merge_if_eq(v8 acc, v8 a, uint64_t x, uint64_t y) {
    uint64_t mask = (uint64_t)0 - (((x ^ y) - 1) >> 63); /* all ones iff x == y (both below 2^63) */
    for (int i = 0; i < 8; i++) acc.l[i] = (acc.l[i] & ~mask) | (a.l[i] & mask);
    return acc;
}
static int ifma_cpu(void) { return 1; }
#elif defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
typedef __m512i v8;
#define IFMA_TARGET __attribute__((target("avx512f,avx512ifma")))
/* unrolled over the size's registers, so that the accumulators stay in registers */
#define IFMA_UNROLL _Pragma("GCC unroll 24")
#define v_zero() _mm512_setzero_si512()
#define v_set1(x) _mm512_set1_epi64((long long)(x))
#define v_load(p) _mm512_loadu_si512((const void *)(p))
#define v_store(p, a) _mm512_storeu_si512((void *)(p), (a))
#define v_madd52lo(acc, a, b) _mm512_madd52lo_epu64((acc), (a), (b))
#define v_madd52hi(acc, a, b) _mm512_madd52hi_epu64((acc), (a), (b))
#define v_shift_in(hi, lo) _mm512_alignr_epi64((hi), (lo), 1)
#define v_lane0(a) ((uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(a)))
/* a compare into a mask register and a masked move: no branch, the same work for either value */
#define v_merge_if_eq(acc, a, x, y) \
    _mm512_mask_mov_epi64((acc), _mm512_cmpeq_epi64_mask(v_set1(x), v_set1(y)), (a))
static int ifma_cpu(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma");
}
#define HEA_IFMA_NATIVE 1
#else
#define HEA_IFMA_NONE 1
#endif

/* Digits (a multiple of 8) for a modulus below 2^(8 width): R = 2^(52 D) > 2m. 0: too large. */
static size_t ifma_digits(size_t width) {
    size_t d = (8 * width + 1 + 51) / 52;
    d = (d + 7) & ~(size_t)7;
    return d / 8 <= HEA_IFMA_MAX_ZMM ? d : 0;
}

/* 1 when this build and CPU run the IFMA path (the emulated build always does). */
int hea_ifma_available(void) {
#if defined(HEA_IFMA_NONE)
    return 0;
#else
    return ifma_cpu();
#endif
}

/* The 52-bit digits (D of them) of a table entry or operand for a ciphertext of width bytes: 0 when
 * the IFMA path does not take that size. */
size_t hea_ifma_digits(size_t width) { return ifma_digits(width); }

/* x (nl limbs, with one zero limb readable past the end) into D 52-bit digits; fixed positions. */
static void to52(uint64_t *out, size_t digits, const mp_limb_t *x, mp_size_t nl) {
    for (size_t j = 0; j < digits; j++) {
        size_t bit = 52 * j, limb = bit / 64, off = bit % 64;
        uint64_t lo = limb < (size_t)nl ? x[limb] : 0, hi = limb + 1 < (size_t)nl ? x[limb + 1] : 0;
        out[j] = ((lo >> off) | ((hi << 1) << (63 - off))) & MASK52;
    }
}

/* D normalised 52-bit digits into nl + 1 limbs (zeroed first); fixed positions. */
static void from52(mp_limb_t *out, mp_size_t nl, const uint64_t *x, size_t digits) {
    memset(out, 0, (size_t)(nl + 1) * sizeof(mp_limb_t));
    for (size_t j = 0; j < digits; j++) {
        size_t bit = 52 * j, limb = bit / 64, off = bit % 64;
        if (limb <= (size_t)nl) out[limb] |= x[j] << off;
        if (limb + 1 <= (size_t)nl) out[limb + 1] |= (x[j] >> 1) >> (63 - off);
    }
}

#if !defined(HEA_IFMA_NONE)
/* r = a b R^-1 mod m (< 2m for a < 2m, b < m), digits normalised; r may alias a or b. NZ is a
 * compile-time constant in each instance below, so the accumulators stay in registers. */
static inline __attribute__((always_inline)) IFMA_TARGET void
amm_body(uint64_t *r, const uint64_t *a, const uint64_t *b, const uint64_t *m, uint64_t k0, const int NZ) {
    v8 acc[HEA_IFMA_MAX_ZMM];
    const v8 zero = v_zero();
IFMA_UNROLL
    for (int z = 0; z < NZ; z++) acc[z] = zero;
    uint64_t acc0 = 0; /* lane 0 of the accumulator: the vector lane 0 is scratch */
    const int D = 8 * NZ;
    for (int i = 0; i < D; i++) {
        uint64_t bi = b[i];
        unsigned __int128 t = (unsigned __int128)a[0] * bi + acc0;
        uint64_t y = ((uint64_t)t * k0) & MASK52;
        t += (unsigned __int128)m[0] * y; /* now t = 0 mod 2^52 */
        acc0 = (uint64_t)(t >> 52);
        v8 vb = v_set1(bi), vy = v_set1(y);
IFMA_UNROLL
        for (int z = 0; z < NZ; z++) {
            acc[z] = v_madd52lo(acc[z], v_load(a + 8 * z), vb);
            acc[z] = v_madd52lo(acc[z], v_load(m + 8 * z), vy);
        }
        /* divide by 2^52: every lane moves down one digit */
IFMA_UNROLL
        for (int z = 0; z < NZ - 1; z++) acc[z] = v_shift_in(acc[z + 1], acc[z]);
        acc[NZ - 1] = v_shift_in(zero, acc[NZ - 1]);
        acc0 += v_lane0(acc[0]); /* before the high halves: acc0 already holds digit 0's */
IFMA_UNROLL
        for (int z = 0; z < NZ; z++) {
            acc[z] = v_madd52hi(acc[z], v_load(a + 8 * z), vb);
            acc[z] = v_madd52hi(acc[z], v_load(m + 8 * z), vy);
        }
    }
IFMA_UNROLL
    for (int z = 0; z < NZ; z++) v_store(r + 8 * z, acc[z]);
    r[0] = acc0;
    uint64_t carry = 0;
    for (int j = 0; j < D; j++) {
        uint64_t v = r[j] + carry;
        r[j] = v & MASK52;
        carry = v >> 52;
    }
}

/* out = entry `which` of size entries of 8 NZ digits, reading every entry. */
static inline __attribute__((always_inline)) IFMA_TARGET void
select_body(uint64_t *out, const uint64_t *tab, size_t size, uint64_t which, const int NZ) {
    v8 acc[HEA_IFMA_MAX_ZMM];
IFMA_UNROLL
    for (int z = 0; z < NZ; z++) acc[z] = v_zero();
    size_t d = 0;
    do { /* size >= 2: a do-while, so that the only branches are the loops' back edges */
        const uint64_t *row = tab + d * 8 * (size_t)NZ;
IFMA_UNROLL
        for (int z = 0; z < NZ; z++) acc[z] = v_merge_if_eq(acc[z], v_load(row + 8 * z), (uint64_t)d, which);
    } while (++d < size);
IFMA_UNROLL
    for (int z = 0; z < NZ; z++) v_store(out + 8 * z, acc[z]);
}

typedef void (*amm_fn)(uint64_t *, const uint64_t *, const uint64_t *, const uint64_t *, uint64_t);
typedef void (*select_fn)(uint64_t *, const uint64_t *, size_t, uint64_t);

#define IFMA_SIZE(NZ)                                                                                       \
    static IFMA_TARGET void amm_##NZ(uint64_t *r, const uint64_t *a, const uint64_t *b, const uint64_t *m,   \
                                     uint64_t k0) {                                                         \
        amm_body(r, a, b, m, k0, NZ);                                                                       \
    }                                                                                                       \
    static IFMA_TARGET void select_##NZ(uint64_t *out, const uint64_t *tab, size_t size, uint64_t which) { \
        select_body(out, tab, size, which, NZ);                                                             \
    }
IFMA_SIZE(1) IFMA_SIZE(2) IFMA_SIZE(3) IFMA_SIZE(4) IFMA_SIZE(5) IFMA_SIZE(6) IFMA_SIZE(7) IFMA_SIZE(8)
IFMA_SIZE(9) IFMA_SIZE(10) IFMA_SIZE(11) IFMA_SIZE(12) IFMA_SIZE(13) IFMA_SIZE(14) IFMA_SIZE(15)
IFMA_SIZE(16) IFMA_SIZE(17) IFMA_SIZE(18) IFMA_SIZE(19) IFMA_SIZE(20) IFMA_SIZE(21) IFMA_SIZE(22)
IFMA_SIZE(23) IFMA_SIZE(24)
#define IFMA_ENTRY(NZ) {amm_##NZ, select_##NZ}
static const struct { amm_fn amm; select_fn select; } ifma_sizes[HEA_IFMA_MAX_ZMM + 1] = {
    {NULL, NULL},       IFMA_ENTRY(1),  IFMA_ENTRY(2),  IFMA_ENTRY(3),  IFMA_ENTRY(4),  IFMA_ENTRY(5),
    IFMA_ENTRY(6),      IFMA_ENTRY(7),  IFMA_ENTRY(8),  IFMA_ENTRY(9),  IFMA_ENTRY(10), IFMA_ENTRY(11),
    IFMA_ENTRY(12),     IFMA_ENTRY(13), IFMA_ENTRY(14), IFMA_ENTRY(15), IFMA_ENTRY(16), IFMA_ENTRY(17),
    IFMA_ENTRY(18),     IFMA_ENTRY(19), IFMA_ENTRY(20), IFMA_ENTRY(21), IFMA_ENTRY(22), IFMA_ENTRY(23),
    IFMA_ENTRY(24)};
#endif

/* The comb table for the IFMA path: T[k][d] = hs^(d 2^(w k)) R mod m, R = 2^(52 D), each entry D
 * 52-bit digits (hea_ifma_digits(mod_width)), a window's entries contiguous. hs and m are
 * public: GMP's fast calls. */
long hea_djn_table52(const uint8_t *mod, size_t mod_width, const uint8_t *hs, size_t hs_width, int windows, int w,
                     uint64_t *table) {
    size_t digits = ifma_digits(mod_width);
    if (!digits) return HEA_UNSUPPORTED;
    mp_size_t nl = (mp_size_t)((mod_width + 7) / 8);
    size_t shift = 52 * digits, sl = shift / 64, sb = shift % 64;
    mp_size_t wide = (mp_size_t)(sl + (size_t)nl + 1); /* cur << shift */
    size_t size = (size_t)1 << w;
    mp_limb_t *buf = malloc((size_t)(6 * nl + 2 * wide + 4) * sizeof(mp_limb_t));
    if (!buf) return HEA_NOMEM;
    mp_limb_t *m = buf, *base = m + nl, *cur = base + nl, *p = cur + nl, *rem = p + 2 * nl,
              *q = rem + nl + 1, *shifted = q + wide + 1;
    load(m, nl, mod, mod_width);
    mp_size_t ml = nl;
    while (ml > 1 && m[ml - 1] == 0) ml--;
    if (!(m[0] & 1)) { free(buf); return 0; }
    load(base, nl, hs, hs_width < (size_t)nl * 8 ? hs_width : (size_t)nl * 8);
    if (mpn_cmp(base, m, nl) >= 0) { free(buf); return 0; }
    for (int k = 0; k < windows; k++) {
        uint64_t *row = table + (size_t)k * size * digits;
        memset(cur, 0, (size_t)nl * sizeof(mp_limb_t));
        cur[0] = 1;
        for (size_t d = 0; d < size; d++) {
            memset(shifted, 0, (size_t)wide * sizeof(mp_limb_t));
            shifted[sl + (size_t)nl] = sb ? mpn_lshift(shifted + sl, cur, nl, (unsigned)sb) : 0;
            if (!sb) memcpy(shifted + sl, cur, (size_t)nl * sizeof(mp_limb_t));
            memset(rem, 0, (size_t)(nl + 1) * sizeof(mp_limb_t));
            mpn_tdiv_qr(q, rem, 0, shifted, wide, m, ml);
            to52(row + d * digits, digits, rem, nl);
            mpn_mul_n(p, cur, base, nl);
            memset(cur, 0, (size_t)nl * sizeof(mp_limb_t));
            mpn_tdiv_qr(q, cur, 0, p, 2 * nl, m, ml);
        }
        memcpy(base, cur, (size_t)nl * sizeof(mp_limb_t));
    }
    free(buf);
    return HEA_OK;
}

/* hea_djn_encrypt's twin on the IFMA path (same arguments and results; the table from
 * hea_djn_table52): HEA_UNSUPPORTED when this CPU or build has no IFMA or the size is too large. */
long hea_djn_encrypt52(const uint8_t *n_bytes, size_t pw, const uint8_t *mod, size_t cw, const uint64_t *table,
                       int windows, int w, const uint8_t *rs, const uint8_t *ms, uint8_t *out, size_t count,
                       int *bad_operand) {
#if defined(HEA_IFMA_NONE)
    (void)n_bytes; (void)pw; (void)mod; (void)cw; (void)table; (void)windows; (void)w; (void)rs; (void)ms;
    (void)out; (void)count; (void)bad_operand;
    return HEA_UNSUPPORTED;
#else
    size_t digits = ifma_digits(cw);
    if (!digits || !ifma_cpu()) return HEA_UNSUPPORTED;
    amm_fn amm = ifma_sizes[digits / 8].amm;
    select_fn pick = ifma_sizes[digits / 8].select;
    mp_size_t nl = (mp_size_t)((cw + 7) / 8), hl = (mp_size_t)((pw + 7) / 8);
    size_t size = (size_t)1 << w, span = (size_t)windows * (size_t)w;
    size_t scratch_n = ct_scratch_limbs(nl, hl);
    mp_limb_t *buf = malloc((size_t)(4 * nl + 2 * hl + 2 + scratch_n) * sizeof(mp_limb_t));
    uint64_t *dbuf = malloc((size_t)(3 + DJN_BLOCK) * digits * sizeof(uint64_t));
    if (!buf || !dbuf) { free(buf); free(dbuf); return HEA_NOMEM; }
    /* m and g: nl + 1 limbs (a value below 2m may need the extra one) */
    mp_limb_t *m = buf, *g = m + nl + 1, *prod = g + nl + 1, *n = prod + 2 * nl, *mv = n + hl, *scratch = mv + hl;
    uint64_t *m52 = dbuf, *entry = m52 + digits, *g52 = entry + digits, *accs = g52 + digits;
    load(m, nl, mod, cw);
    m[nl] = 0;
    load(n, hl, n_bytes, pw);
    to52(m52, digits, m, nl);
    uint64_t k0 = neg_inverse(m[0]) & MASK52;
    for (size_t i = 0; i < count; i++) { /* validity first, as in hea_djn_encrypt */
        const uint8_t *r = rs + i * pw;
        uint8_t extra = 0;
        for (size_t b = span; b < pw * 8; b++) extra |= (uint8_t)((r[b >> 3] >> (b & 7)) & 1u);
        if (extra) { *bad_operand = 0; free(buf); free(dbuf); return (long)i; }
        if (ms && !in_range(ms + i * pw, pw, n, hl, mv, 0)) { *bad_operand = 1; free(buf); free(dbuf); return (long)i; }
    }
    for (size_t start = 0; start < count; start += DJN_BLOCK) {
        size_t block = count - start < DJN_BLOCK ? count - start : DJN_BLOCK;
        for (size_t i = 0; i < block; i++)
            pick(accs + i * digits, table, size, digit(rs + (start + i) * pw, pw, 0, w));
        for (int k = 1; k < windows; k++) {
            const uint64_t *tab = table + (size_t)k * size * digits;
            for (size_t i = 0; i < block; i++) {
                pick(entry, tab, size, digit(rs + (start + i) * pw, pw, (size_t)k * w, w));
                amm(accs + i * digits, accs + i * digits, entry, m52, k0);
            }
        }
        for (size_t i = 0; i < block; i++) {
            /* the multiplication by g = 1 + m n (or 1) leaves Montgomery form */
            one_plus_mn(g, nl, ms ? ms + (start + i) * pw : NULL, pw, n, hl, mv, prod, scratch);
            to52(g52, digits, g, nl);
            amm(accs + i * digits, accs + i * digits, g52, m52, k0);
            /* < 2m: subtract m once unless that borrows */
            from52(g, nl, accs + i * digits, digits);
            mp_limb_t borrow = mpn_sub_n(prod, g, m, nl + 1);
            mpn_cnd_sub_n(borrow ^ 1, g, g, m, nl + 1);
            store(out + (start + i) * cw, cw, g, nl);
        }
    }
    free(buf);
    free(dbuf);
    return HEA_OK;
#endif
}
