/* Constant-time check of gmp_batch.c's DJN encryption under valgrind memcheck (the ctgrind
 * method): the secret exponents are marked undefined, so memcheck reports every branch
 * ("Conditional jump or move depends on uninitialised value") and every memory address
 * ("Use of uninitialised value") computed from them, inside GMP too.
 *
 * Input file: five uint64 (pw, cw, exponent_bits, window, count), then n (pw bytes), hs (cw
 * bytes), the exponents (count x pw) and the plaintexts (count x pw). Writes the ciphertexts
 * (count x cw) to stdout. Mode "encrypt52" runs the IFMA engine instead (hea_djn_table52 and
 * hea_djn_encrypt52; build with -DHEA_IFMA_EMULATE, since valgrind cannot decode AVX-512). Mode
 * "leak" instead reads the table at an address taken from the secret digit, the pattern the check
 * must catch.
 */
#include <gmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/memcheck.h>

long hea_djn_table(const uint8_t *mod, size_t mod_width, const uint8_t *hs, size_t hs_width, int windows, int w,
                   mp_limb_t *table);
long hea_djn_encrypt(const uint8_t *n_bytes, size_t pw, const uint8_t *mod, size_t cw, const mp_limb_t *table,
                     int windows, int w, const uint8_t *rs, const uint8_t *ms, uint8_t *out, size_t count,
                     int *bad_operand);
long hea_djn_table52(const uint8_t *mod, size_t mod_width, const uint8_t *hs, size_t hs_width, int windows, int w,
                     uint64_t *table);
long hea_djn_encrypt52(const uint8_t *n_bytes, size_t pw, const uint8_t *mod, size_t cw, const uint64_t *table,
                       int windows, int w, const uint8_t *rs, const uint8_t *ms, uint8_t *out, size_t count,
                       int *bad_operand);
size_t hea_ifma_digits(size_t width);

static uint8_t *take(FILE *f, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (!p || fread(p, 1, n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: ct_harness encrypt|encrypt52|leak FILE\n"); return 2; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 2; }
    uint64_t hdr[5];
    if (fread(hdr, sizeof hdr, 1, f) != 1) { fprintf(stderr, "short header\n"); return 2; }
    size_t pw = hdr[0], cw = hdr[1], bits = hdr[2], count = hdr[4];
    int w = (int)hdr[3], windows = (int)((bits + (size_t)w - 1) / (size_t)w);
    uint8_t *n = take(f, pw), *hs = take(f, cw), *rs = take(f, count * pw), *ms = take(f, count * pw);
    fclose(f);
    /* n^2 */
    mpz_t zn, zn2;
    mpz_init(zn);
    mpz_init(zn2);
    mpz_import(zn, pw, -1, 1, 0, 0, n);
    mpz_mul(zn2, zn, zn);
    uint8_t *n2 = calloc(cw, 1);
    mpz_export(n2, NULL, -1, 1, 0, 0, zn2);
    int ifma = strcmp(argv[1], "encrypt52") == 0;
    size_t limbs = ifma ? hea_ifma_digits(cw) : (cw + 7) / 8, entries = (size_t)windows << w;
    mp_limb_t *table = malloc(entries * limbs * sizeof(mp_limb_t));
    long built = ifma ? hea_djn_table52(n2, cw, hs, cw, windows, w, (uint64_t *)table)
                      : hea_djn_table(n2, cw, hs, cw, windows, w, table);
    if (built != -1) { fprintf(stderr, "table failed\n"); return 2; }
    /* the secret: each exponent's exponent_bits (the bytes above are zero and public) */
    for (size_t i = 0; i < count; i++) VALGRIND_MAKE_MEM_UNDEFINED(rs + i * pw, bits / 8);
    uint8_t *out = malloc(count * cw);
    if (strcmp(argv[1], "leak") == 0) {
        /* a table read indexed by the first secret digit */
        size_t digit = rs[0] & (((size_t)1 << w) - 1);
        memcpy(out, table + digit * limbs, cw < limbs * 8 ? cw : limbs * 8);
    } else {
        int bad = -1;
        long r = ifma ? hea_djn_encrypt52(n, pw, n2, cw, (uint64_t *)table, windows, w, rs, ms, out, count, &bad)
                      : hea_djn_encrypt(n, pw, n2, cw, table, windows, w, rs, ms, out, count, &bad);
        if (r != -1) { fprintf(stderr, "encrypt refused element %ld (%d)\n", r, bad); return 3; }
    }
    VALGRIND_MAKE_MEM_DEFINED(out, count * cw);
    fwrite(out, 1, strcmp(argv[1], "leak") == 0 ? 0 : count * cw, stdout);
    return 0;
}
