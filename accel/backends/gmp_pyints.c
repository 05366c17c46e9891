/* he-accel's native engine as a CPython extension: the cheap ops (add, add_plain, sum) on lists
 * of Python ints, with no Python-level work per element.
 *
 * The ctypes path (_native.py) needs every int packed to bytes and every result unpacked
 * (int.to_bytes / int.from_bytes: about 1 us per element at 2048 bits, a quarter of an add).
 * Here the ints' digits are read straight into zero-padded 64-bit limbs, the batch runs in
 * gmp_batch.c's loops (linked into this module) with the GIL released, and the results are
 * built as ints from the limbs.
 *
 * Reading and writing digits uses CPython's int layout, which differs by version:
 *   3.10, 3.11: PyVarObject ob_size (sign and digit count) + ob_digit[]
 *   3.12, 3.13: long_value.lv_tag (digit count << 3 | sign) + long_value.ob_digit[]
 * Both declared by Python.h (cpython/longintrepr.h) with _PyLong_New. Any other version, or a
 * build with -DHEA_PORTABLE_LONGS, uses the public PyLong_AsNativeBytes /
 * PyLong_FromUnsignedNativeBytes (3.13+): correct, but as slow as int.to_bytes.
 * _native_ints.py checks the conversion on known values at load and refuses the module if it
 * disagrees.
 *
 * Every function returns None for input it does not take (an element that is not an exact int,
 * a gmpy2 mpz or an int subclass; a negative one; one too wide for its width or out of range):
 * the caller then runs the general path, which raises the error the other paths raise.
 * Ciphertexts are public data: these conversions may branch on them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <gmp.h>
#include <stdint.h>
#include <string.h>

/* gmp_batch.c, compiled into this module */
long hea_mulmod(const uint8_t *mod, size_t mod_width, const uint8_t *a, const uint8_t *b, uint8_t *out,
                size_t count, size_t width, int *bad_operand);
long hea_add_plain(const uint8_t *n_bytes, size_t pw, const uint8_t *n2_bytes, size_t cw, const uint8_t *cs,
                   const uint8_t *ms, uint8_t *out, size_t count, int *bad_operand);
long hea_product_redc(const uint8_t *mod, size_t mod_width, const uint8_t *a, size_t count, size_t width,
                      uint8_t *out);
long hea_product_groups(const uint8_t *mod, size_t mod_width, const uint8_t *a, const size_t *counts,
                        size_t groups, size_t width, uint8_t *out);

#if !defined(HEA_PORTABLE_LONGS) && PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030E0000
#define HEA_DIGITS 1
#else
#define HEA_DIGITS 0
#if PY_VERSION_HEX < 0x030D0000
#error "without CPython's digit layout (3.10-3.13) this module needs PyLong_AsNativeBytes (3.13+)"
#endif
#endif

/* gmpy2's mpz object: PyObject_HEAD then the mpz_t (gmpy2 2.x, gmpy2.h's MPZ_Object). The
 * loader passes the type and checks the layout on a known value before using it. */
typedef struct {
    PyObject_HEAD
    __mpz_struct z;
} hea_mpz_object;

static PyTypeObject *mpz_type = NULL;

#define OK 0
#define REFUSE 1 /* not taken here: the general path decides */

#if HEA_DIGITS
/* 960 bits are a whole number of digits (30- or 15-bit) and of 64-bit limbs: a block of digits
 * converts to 15 limbs (and back) in straight-line code, every shift a constant once the loop
 * is unrolled, about twice as fast as the general loop with its branch per digit. At a block's
 * end both sides are at a boundary, so the general loop carries on from a clean state. */
#define BLOCK_LIMBS 15
#define BLOCK_DIGITS (960 / PyLong_SHIFT)

static inline void digits_to_block(const digit *d, mp_limb_t *out) {
    uint64_t acc = 0;
    int bits = 0, k = 0;
#pragma GCC unroll 64
    for (int j = 0; j < BLOCK_DIGITS; j++) {
        uint64_t dig = d[j];
        acc |= dig << bits;
        bits += PyLong_SHIFT;
        if (bits >= 64) {
            out[k++] = acc;
            bits -= 64;
            acc = bits ? dig >> (PyLong_SHIFT - bits) : 0;
        }
    }
}

static inline void block_to_digits(const mp_limb_t *x, digit *d) {
    uint64_t acc = x[0];
    int have = 64, k = 1;
#pragma GCC unroll 64
    for (int i = 0; i < BLOCK_DIGITS; i++) {
        if (have >= PyLong_SHIFT) {
            d[i] = (digit)(acc & PyLong_MASK);
            acc >>= PyLong_SHIFT;
            have -= PyLong_SHIFT;
        } else {
            uint64_t next = x[k++];
            d[i] = (digit)((acc | (next << have)) & PyLong_MASK);
            acc = next >> (PyLong_SHIFT - have);
            have += 64 - PyLong_SHIFT;
        }
    }
}
#endif

/* |x| (an exact int) into nl limbs, zero-padded; REFUSE when negative or wider. */
static int int_to_limbs(PyObject *x, mp_limb_t *out, size_t nl) {
#if HEA_DIGITS
    PyLongObject *v = (PyLongObject *)x;
#if PY_VERSION_HEX >= 0x030C0000
    uintptr_t tag = v->long_value.lv_tag;
    if ((tag & 3) == 2) return REFUSE; /* negative */
    size_t nd = (size_t)(tag >> 3);
    const digit *d = v->long_value.ob_digit;
#else
    Py_ssize_t size = Py_SIZE(v);
    if (size < 0) return REFUSE;
    size_t nd = (size_t)size;
    const digit *d = v->ob_digit;
#endif
    if ((size_t)nd * PyLong_SHIFT > nl * 64 + PyLong_SHIFT) return REFUSE; /* clearly too wide */
    /* 64-bit shifts only (a 128-bit accumulator costs twice as much per digit) */
    size_t i = 0, k = 0;
    for (; nd - i >= BLOCK_DIGITS && k + BLOCK_LIMBS <= nl; i += BLOCK_DIGITS, k += BLOCK_LIMBS)
        digits_to_block(d + i, out + k);
    uint64_t acc = 0;
    int bits = 0; /* bits held in acc, < 64 */
    for (; i < nd; i++) {
        uint64_t dig = d[i];
        acc |= dig << bits;
        bits += PyLong_SHIFT;
        if (bits >= 64) {
            if (k >= nl) return REFUSE;
            out[k++] = acc;
            bits -= 64;
            acc = bits ? dig >> (PyLong_SHIFT - bits) : 0;
        }
    }
    if (acc) {
        if (k >= nl) return REFUSE;
        out[k++] = acc;
    }
    memset(out + k, 0, (nl - k) * sizeof(mp_limb_t));
    return OK;
#else
    Py_ssize_t need = PyLong_AsNativeBytes(x, out, (Py_ssize_t)(nl * sizeof(mp_limb_t)),
                                           Py_ASNATIVEBYTES_LITTLE_ENDIAN | Py_ASNATIVEBYTES_REJECT_NEGATIVE |
                                           Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
    if (need < 0) { PyErr_Clear(); return REFUSE; }
    return need > (Py_ssize_t)(nl * sizeof(mp_limb_t)) ? REFUSE : OK;
#endif
}

/* An element into limbs: exact ints directly, mpz from its limbs, int subclasses by value. */
static int element_to_limbs(PyObject *x, mp_limb_t *out, size_t nl) {
    if (PyLong_CheckExact(x)) return int_to_limbs(x, out, nl);
    if (mpz_type != NULL && Py_TYPE(x) == mpz_type) {
        const __mpz_struct *z = &((hea_mpz_object *)x)->z;
        if (z->_mp_size < 0 || (size_t)z->_mp_size > nl) return REFUSE;
        size_t k = (size_t)z->_mp_size;
        memcpy(out, z->_mp_d, k * sizeof(mp_limb_t));
        memset(out + k, 0, (nl - k) * sizeof(mp_limb_t));
        return OK;
    }
    return REFUSE; /* bools, subclasses, numpy ints, anything else: the general path's checks */
}

/* nl limbs into an int. */
static PyObject *limbs_to_int(const mp_limb_t *x, size_t nl) {
    size_t top = nl;
    while (top > 0 && x[top - 1] == 0) top--;
    if (top <= 1) return PyLong_FromUnsignedLongLong(top ? (unsigned long long)x[0] : 0ULL);
#if HEA_DIGITS
    size_t bits = 64 * (top - 1) + (64 - (size_t)__builtin_clzll((unsigned long long)x[top - 1]));
    size_t nd = (bits + PyLong_SHIFT - 1) / PyLong_SHIFT;
    PyLongObject *v = _PyLong_New((Py_ssize_t)nd);
    if (v == NULL) return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    digit *d = v->long_value.ob_digit;
#else
    digit *d = v->ob_digit;
#endif
    size_t i = 0, k = 0;
    for (; nd - i >= BLOCK_DIGITS && k + BLOCK_LIMBS <= top; i += BLOCK_DIGITS, k += BLOCK_LIMBS)
        block_to_digits(x + k, d + i);
    uint64_t acc = k < top ? x[k] : 0;
    int have = 64; /* bits left in acc */
    k++;
    for (; i < nd; i++) {
        if (have >= PyLong_SHIFT) {
            d[i] = (digit)(acc & PyLong_MASK);
            acc >>= PyLong_SHIFT;
            have -= PyLong_SHIFT;
        } else { /* the digit straddles two limbs */
            uint64_t next = k < top ? x[k++] : 0;
            d[i] = (digit)((acc | (next << have)) & PyLong_MASK);
            acc = next >> (PyLong_SHIFT - have);
            have += 64 - PyLong_SHIFT;
        }
    }
    return (PyObject *)v;
#else
    return PyLong_FromUnsignedNativeBytes(x, top * sizeof(mp_limb_t), Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#endif
}

/* A sequence's elements into count x nl limbs; REFUSE at the first element not taken. */
static int seq_to_limbs(PyObject *seq, size_t count, mp_limb_t *out, size_t nl) {
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (size_t i = 0; i < count; i++)
        if (element_to_limbs(items[i], out + i * nl, nl) != OK) return REFUSE;
    return OK;
}

static PyObject *limbs_to_list(const mp_limb_t *x, size_t count, size_t nl) {
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL) return NULL;
    for (size_t i = 0; i < count; i++) {
        PyObject *v = limbs_to_int(x + i * nl, nl);
        if (v == NULL) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

/* The list or tuple's count, or -1 (no exception) for anything else. */
static Py_ssize_t fast_len(PyObject *x) {
    return (PyList_CheckExact(x) || PyTuple_CheckExact(x)) ? PySequence_Fast_GET_SIZE(x) : -1;
}

static size_t limbs_of(Py_ssize_t width) { return (size_t)((width + 7) / 8); }

/* A modulus (an int) as nl limbs; the caller's key is valid, so a refusal is a bug: raise. */
static int modulus(PyObject *m, mp_limb_t *out, size_t nl) {
    if (!PyLong_CheckExact(m) || int_to_limbs(m, out, nl) != OK) {
        PyErr_SetString(PyExc_ValueError, "the modulus must be a non-negative int of the given width");
        return -1;
    }
    return 0;
}

static PyObject *nomem(void) { return PyErr_NoMemory(); }

/* None: the input or the engine refused, and the caller falls back. */
static PyObject *refused(void) { Py_RETURN_NONE; }

/* The call's result for an engine status r other than -1 (done): -2 MemoryError, else refused. */
static PyObject *engine_failure(long r) { return r == -2 ? nomem() : refused(); }

/* add(a, b, n2, width): [a_i b_i mod n2], or None (see above). */
static PyObject *py_add(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *a, *b, *n2;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OOOn", &a, &b, &n2, &width)) return NULL;
    Py_ssize_t count = fast_len(a);
    if (count < 0 || fast_len(b) != count || width <= 0) Py_RETURN_NONE;
    size_t nl = limbs_of(width), w8 = nl * 8;
    mp_limb_t *buf = PyMem_RawMalloc((3 * (size_t)count + 1) * w8);
    if (buf == NULL) return nomem();
    mp_limb_t *m = buf, *x = m + nl, *y = x + (size_t)count * nl, *out = y + (size_t)count * nl;
    PyObject *result = NULL;
    if (modulus(n2, m, nl) < 0) goto done;
    if (seq_to_limbs(a, (size_t)count, x, nl) != OK || seq_to_limbs(b, (size_t)count, y, nl) != OK) {
        result = refused();
        goto done;
    }
    long r;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    r = hea_mulmod((const uint8_t *)m, w8, (const uint8_t *)x, (const uint8_t *)y, (uint8_t *)out,
                   (size_t)count, w8, &bad);
    Py_END_ALLOW_THREADS
    result = r == -1 ? limbs_to_list(out, (size_t)count, nl) : engine_failure(r);
done:
    PyMem_RawFree(buf);
    return result;
}

/* add_plain(cs, ms, n, n2, pw, cw): [c_i (1 + m_i n) mod n2], or None. */
static PyObject *py_add_plain(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cs, *ms, *n, *n2;
    Py_ssize_t pw, cw;
    if (!PyArg_ParseTuple(args, "OOOOnn", &cs, &ms, &n, &n2, &pw, &cw)) return NULL;
    Py_ssize_t count = fast_len(cs);
    if (count < 0 || fast_len(ms) != count || pw <= 0 || cw <= 0) Py_RETURN_NONE;
    size_t hl = limbs_of(pw), nl = limbs_of(cw);
    mp_limb_t *buf = PyMem_RawMalloc(((2 * (size_t)count + 1) * nl + ((size_t)count + 1) * hl) * 8);
    if (buf == NULL) return nomem();
    mp_limb_t *nm = buf, *n2m = nm + hl, *c = n2m + nl, *mv = c + (size_t)count * nl, *out = mv + (size_t)count * hl;
    PyObject *result = NULL;
    if (modulus(n, nm, hl) < 0 || modulus(n2, n2m, nl) < 0) goto done;
    if (seq_to_limbs(cs, (size_t)count, c, nl) != OK || seq_to_limbs(ms, (size_t)count, mv, hl) != OK) {
        result = refused();
        goto done;
    }
    long r;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    r = hea_add_plain((const uint8_t *)nm, hl * 8, (const uint8_t *)n2m, nl * 8, (const uint8_t *)c,
                      (const uint8_t *)mv, (uint8_t *)out, (size_t)count, &bad);
    Py_END_ALLOW_THREADS
    result = r == -1 ? limbs_to_list(out, (size_t)count, nl) : engine_failure(r);
done:
    PyMem_RawFree(buf);
    return result;
}

/* product(cs, n2, width): prod c_i mod n2 (1 for none), or None. */
static PyObject *py_product(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cs, *n2;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OOn", &cs, &n2, &width)) return NULL;
    Py_ssize_t count = fast_len(cs);
    if (count < 0 || width <= 0) Py_RETURN_NONE;
    size_t nl = limbs_of(width), w8 = nl * 8;
    mp_limb_t *buf = PyMem_RawMalloc(((size_t)count + 2) * w8);
    if (buf == NULL) return nomem();
    mp_limb_t *m = buf, *x = m + nl, *out = x + (size_t)count * nl;
    PyObject *result = NULL;
    if (modulus(n2, m, nl) < 0) goto done;
    if (seq_to_limbs(cs, (size_t)count, x, nl) != OK) { result = refused(); goto done; }
    long r;
    Py_BEGIN_ALLOW_THREADS
    r = hea_product_redc((const uint8_t *)m, w8, (const uint8_t *)x, (size_t)count, w8, (uint8_t *)out);
    Py_END_ALLOW_THREADS
    result = r == -1 ? limbs_to_int(out, nl) : engine_failure(r);
done:
    PyMem_RawFree(buf);
    return result;
}

/* products(cs, counts, n2, width): [prod of each consecutive group of cs mod n2] (1 for an
 * empty group), or None. counts: a list of non-negative ints summing to len(cs). */
static PyObject *py_products(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cs, *counts, *n2;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OOOn", &cs, &counts, &n2, &width)) return NULL;
    Py_ssize_t count = fast_len(cs), groups = fast_len(counts);
    if (count < 0 || groups < 0 || width <= 0) Py_RETURN_NONE;
    size_t *sizes = PyMem_RawMalloc(((size_t)groups + 1) * sizeof(size_t));
    if (sizes == NULL) return nomem();
    PyObject **items = PySequence_Fast_ITEMS(counts);
    Py_ssize_t total = 0;
    for (Py_ssize_t g = 0; g < groups; g++) {
        Py_ssize_t k = PyLong_CheckExact(items[g]) ? PyLong_AsSsize_t(items[g]) : -1;
        if (k < 0 || k > count - total) { /* bad or too many counts: the general path says which */
            PyErr_Clear();
            PyMem_RawFree(sizes);
            Py_RETURN_NONE;
        }
        sizes[g] = (size_t)k;
        total += k;
    }
    if (total != count) { PyMem_RawFree(sizes); Py_RETURN_NONE; }
    size_t nl = limbs_of(width), w8 = nl * 8;
    mp_limb_t *buf = PyMem_RawMalloc(((size_t)count + (size_t)groups + 1) * w8);
    if (buf == NULL) { PyMem_RawFree(sizes); return nomem(); }
    mp_limb_t *m = buf, *x = m + nl, *out = x + (size_t)count * nl;
    PyObject *result = NULL;
    if (modulus(n2, m, nl) < 0) goto done;
    if (seq_to_limbs(cs, (size_t)count, x, nl) != OK) { result = refused(); goto done; }
    long r;
    Py_BEGIN_ALLOW_THREADS
    r = hea_product_groups((const uint8_t *)m, w8, (const uint8_t *)x, sizes, (size_t)groups, w8, (uint8_t *)out);
    Py_END_ALLOW_THREADS
    result = r == -1 ? limbs_to_list(out, (size_t)groups, nl) : engine_failure(r);
done:
    PyMem_RawFree(buf);
    PyMem_RawFree(sizes);
    return result;
}

/* roundtrip(x, width): the int rebuilt from its limbs (the loader's check), or None if refused. */
static PyObject *py_roundtrip(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "On", &x, &width)) return NULL;
    size_t nl = limbs_of(width);
    mp_limb_t *buf = PyMem_RawMalloc((nl ? nl : 1) * 8);
    if (buf == NULL) return nomem();
    PyObject *result = element_to_limbs(x, buf, nl) == OK ? limbs_to_int(buf, nl) : refused();
    PyMem_RawFree(buf);
    return result;
}

/* use_mpz(type): read gmpy2 mpz elements from their limbs (None turns it off). */
static PyObject *py_use_mpz(PyObject *self, PyObject *arg) {
    (void)self;
    if (arg == Py_None) {
        Py_CLEAR(mpz_type);
    } else if (PyType_Check(arg)) {
        Py_INCREF(arg);
        Py_XSETREF(mpz_type, (PyTypeObject *)arg);
    } else {
        PyErr_SetString(PyExc_TypeError, "use_mpz takes a type or None");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add", py_add, METH_VARARGS, "add(a, b, n2, width): [a_i b_i mod n2] or None"},
    {"add_plain", py_add_plain, METH_VARARGS, "add_plain(cs, ms, n, n2, pw, cw): [c_i (1 + m_i n) mod n2] or None"},
    {"product", py_product, METH_VARARGS, "product(cs, n2, width): prod c_i mod n2 or None"},
    {"products", py_products, METH_VARARGS,
     "products(cs, counts, n2, width): [prod of each consecutive group of cs mod n2] or None"},
    {"roundtrip", py_roundtrip, METH_VARARGS, "roundtrip(x, width): x through limbs, or None"},
    {"use_mpz", py_use_mpz, METH_O, "use_mpz(type or None): read gmpy2 mpz elements directly"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hea_pyints", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__hea_pyints(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "digit_layout", HEA_DIGITS) < 0 ||
        PyModule_AddIntConstant(m, "limb_bits", GMP_NUMB_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
