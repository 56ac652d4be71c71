/* bertdetr.bert._speedups: C for the inner loops of ``bertdetr bert make-data`` (optional).
 *
 * Each function here has a pure-Python path with the same output (draws.py for Stream,
 * features.py's ExampleEncoder for varints); the tests run both. Two things:
 *
 * 1. ``Stream``: Python's random stream, continued in C.
 *
 * ``create_pretraining_data`` must consume one ``random.Random`` stream draw for draw as Google's
 * script does. Most of its draws are the candidate shuffle of each instance (~160 rejection
 * sampled ``getrandbits`` calls each), which costs about half of the run as Python calls; here
 * the same draws are a few nanoseconds each.
 *
 * ``Stream(state)`` takes the internal state of a ``random.Random`` (the middle item of its
 * ``getstate()``: 624 Mersenne Twister words and the position in them) and continues that
 * MT19937 stream; ``Stream.getstate()`` gives it back for ``setstate``. Every method consumes
 * exactly the 32-bit words CPython's ``random.Random`` would (CPython 3.x, Modules/_randommodule.c
 * and Lib/random.py):
 *
 *   random()         two words a, b: ((a >> 5) * 2**26 + (b >> 6)) / 2**53
 *   getrandbits(k)   k <= 32: one word, its top k bits
 *   randbelow(n)     getrandbits(n.bit_length()) until the value is below n (Random._randbelow)
 *   shuffle(x)       x[i], x[randbelow(i + 1)] swapped for i = len(x) - 1 down to 1 (Random.shuffle)
 *   words(m)         the m words of getrandbits(32 * m), as its to_bytes(4 * m, "little")
 *   mask(...)        make-data's 80/10/10 draws, see mask_doc
 *   masked_lm(...)   make-data's candidate shuffle and mask(), see masked_lm_doc
 *
 * draws.py says which of Google's draws each method continues; its PythonDraws makes the same
 * calls on random.Random itself, and the tests check both give the same stream and the same files.
 *
 * 2. ``varints(ids)``: a list of ints in [0, 2**32) as concatenated protobuf varints (the packed
 * payload of an Int64List), which is most of the work of serializing a record.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

typedef struct {
    PyObject_HEAD
    uint32_t state[MT_N];
    int index; /* next word to temper; MT_N: regenerate first (CPython's convention) */
} Stream;

/* The MT19937 recurrence over the whole state, in place (Matsumoto & Nishimura, 1998). */
static void
regenerate(Stream *s)
{
    uint32_t *mt = s->state;
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (mt[i] & 0x80000000u) | (mt[(i + 1) % MT_N] & 0x7fffffffu);
        uint32_t next = mt[(i + MT_M) % MT_N] ^ (y >> 1);
        if (y & 1u)
            next ^= 0x9908b0dfu;
        mt[i] = next;
    }
    s->index = 0;
}

static inline uint32_t
next_word(Stream *s)
{
    if (s->index >= MT_N)
        regenerate(s);
    uint32_t y = s->state[s->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

static inline double
next_double(Stream *s)
{
    uint32_t a = next_word(s) >> 5, b = next_word(s) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* Random._randbelow(n) for 1 <= n < 2**32. */
static inline uint32_t
below(Stream *s, uint32_t n)
{
    int k = 0;
    for (uint32_t m = n; m; m >>= 1)
        k++;
    uint32_t r = next_word(s) >> (32 - k);
    while (r >= n)
        r = next_word(s) >> (32 - k);
    return r;
}

/* A Python int in [1, 2**32) as the bound of below(); -1 with an exception set otherwise. */
static int64_t
bound_arg(PyObject *obj)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(obj);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "randbelow: n must be in [1, 2**32)");
        }
        return -1;
    }
    if (n < 1 || n > 0xffffffffull) {
        PyErr_SetString(PyExc_ValueError, "randbelow: n must be in [1, 2**32)");
        return -1;
    }
    return (int64_t)n;
}

static int
Stream_init(Stream *self, PyObject *args, PyObject *kwds)
{
    PyObject *state;
    if (!PyArg_ParseTuple(args, "O!:Stream", &PyTuple_Type, &state))
        return -1;
    if (PyTuple_GET_SIZE(state) != MT_N + 1) {
        PyErr_SetString(PyExc_ValueError, "state must be random.Random().getstate()[1] (625 ints)");
        return -1;
    }
    for (int i = 0; i < MT_N; i++) {
        unsigned long word = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (word == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        if (word > 0xfffffffful) {
            PyErr_SetString(PyExc_ValueError, "state words must be 32-bit");
            return -1;
        }
        self->state[i] = (uint32_t)word;
    }
    long index = PyLong_AsLong(PyTuple_GET_ITEM(state, MT_N));
    if (index == -1 && PyErr_Occurred())
        return -1;
    if (index < 0 || index > MT_N) {
        PyErr_SetString(PyExc_ValueError, "state index out of range");
        return -1;
    }
    self->index = (int)index;
    return 0;
}

static PyObject *
Stream_getstate(Stream *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *state = PyTuple_New(MT_N + 1);
    if (state == NULL)
        return NULL;
    for (int i = 0; i <= MT_N; i++) {
        PyObject *item = PyLong_FromUnsignedLong(i < MT_N ? self->state[i] : (unsigned long)self->index);
        if (item == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, i, item);
    }
    return state;
}

static PyObject *
Stream_random(Stream *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(next_double(self));
}

static PyObject *
Stream_getrandbits(Stream *self, PyObject *arg)
{
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (k < 0 || k > 32) {
        PyErr_SetString(PyExc_ValueError, "getrandbits: k must be in [0, 32] (use words() for more)");
        return NULL;
    }
    if (k == 0) /* CPython returns 0 without drawing */
        return PyLong_FromLong(0);
    return PyLong_FromUnsignedLong(next_word(self) >> (32 - k));
}

static PyObject *
Stream_randbelow(Stream *self, PyObject *arg)
{
    int64_t n = bound_arg(arg);
    if (n < 0)
        return NULL;
    return PyLong_FromUnsignedLong(below(self, (uint32_t)n));
}

static PyObject *
Stream_shuffle(Stream *self, PyObject *arg)
{
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "shuffle: a list is needed");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    if (n > (Py_ssize_t)0xffffffff) {
        PyErr_SetString(PyExc_ValueError, "shuffle: list too long");
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(arg); /* the list's item array */
    for (Py_ssize_t i = n - 1; i > 0; i--) {
        uint32_t j = below(self, (uint32_t)(i + 1));
        PyObject *t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_words(Stream *self, PyObject *arg)
{
    Py_ssize_t m = PyLong_AsSsize_t(arg);
    if (m == -1 && PyErr_Occurred())
        return NULL;
    if (m < 0 || m > PY_SSIZE_T_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "words: m out of range");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 4 * m);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t t = 0; t < m; t++, p += 4) {
        uint32_t w = next_word(self);
        p[0] = (unsigned char)w;
        p[1] = (unsigned char)(w >> 8);
        p[2] = (unsigned char)(w >> 16);
        p[3] = (unsigned char)(w >> 24);
    }
    return out;
}

static int
compare_positions(const void *a, const void *b)
{
    Py_ssize_t x = *(const Py_ssize_t *)a, y = *(const Py_ssize_t *)b;
    return (x > y) - (x < y);
}

/* The end of Google's create_masked_lm_predictions, for the chosen positions (distinct, in the
 * order chosen): the positions sorted and the original tokens there, returned as two lists, then
 * the 80/10/10 draws for each position in the order chosen, applied to tokens in place. */
static PyObject *
mask_chosen(Stream *self, PyObject *tokens, const Py_ssize_t *chosen, Py_ssize_t k,
            PyObject *mask_id, PyObject *word_ids)
{
    Py_ssize_t num_tokens = PyList_GET_SIZE(tokens), vocab_size = PyList_GET_SIZE(word_ids);
    if (vocab_size < 1 || vocab_size > (Py_ssize_t)0xffffffff) {
        PyErr_SetString(PyExc_ValueError, "word_ids must have 1 to 2**32 - 1 items");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < k; c++) {
        if (chosen[c] < 0 || chosen[c] >= num_tokens) {
            PyErr_SetString(PyExc_IndexError, "masked position out of range");
            return NULL;
        }
    }
    Py_ssize_t *sorted = PyMem_Malloc((k ? k : 1) * sizeof(Py_ssize_t));
    if (sorted == NULL)
        return PyErr_NoMemory();
    memcpy(sorted, chosen, k * sizeof(Py_ssize_t));
    qsort(sorted, k, sizeof(Py_ssize_t), compare_positions);
    PyObject *positions = PyList_New(k), *labels = PyList_New(k);
    if (positions == NULL || labels == NULL)
        goto error;
    for (Py_ssize_t c = 0; c < k; c++) {
        PyObject *position = PyLong_FromSsize_t(sorted[c]);
        if (position == NULL)
            goto error;
        PyList_SET_ITEM(positions, c, position);
        PyObject *label = PyList_GET_ITEM(tokens, sorted[c]);
        Py_INCREF(label);
        PyList_SET_ITEM(labels, c, label);
    }
    PyMem_Free(sorted);
    for (Py_ssize_t c = 0; c < k; c++) {
        PyObject *replacement;
        if (next_double(self) < 0.8) /* 80%: [MASK] */
            replacement = mask_id;
        else if (next_double(self) < 0.5) /* 10%: keep the original */
            continue;
        else /* 10%: a random word, vocab_words[rng.randint(0, len(vocab_words) - 1)] */
            replacement = PyList_GET_ITEM(word_ids, below(self, (uint32_t)vocab_size));
        Py_INCREF(replacement);
        PyList_SetItem(tokens, chosen[c], replacement); /* steals the reference, drops the old one */
    }
    return Py_BuildValue("(NN)", positions, labels);
error:
    PyMem_Free(sorted);
    Py_XDECREF(positions);
    Py_XDECREF(labels);
    return NULL;
}

PyDoc_STRVAR(mask_doc,
"mask(tokens, chosen, mask_id, word_ids) -> (positions, labels)\n\n"
"The end of Google's create_masked_lm_predictions for the chosen positions of tokens (distinct,\n"
"in the order chosen): positions = sorted(chosen), labels = the tokens there; then, for each\n"
"chosen index in order: if random() < 0.8, tokens[index] = mask_id; else if random() < 0.5, keep\n"
"it; else tokens[index] = word_ids[randbelow(len(word_ids))].");

static PyObject *
Stream_mask(Stream *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "mask(tokens: list, chosen: list, mask_id, word_ids: list)");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(args[1]);
    Py_ssize_t *chosen = PyMem_Malloc((k ? k : 1) * sizeof(Py_ssize_t));
    if (chosen == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t c = 0; c < k; c++) {
        chosen[c] = PyLong_AsSsize_t(PyList_GET_ITEM(args[1], c));
        if (chosen[c] == -1 && PyErr_Occurred()) {
            PyMem_Free(chosen);
            return NULL;
        }
    }
    PyObject *result = mask_chosen(self, args[0], chosen, k, args[2], args[3]);
    PyMem_Free(chosen);
    return result;
}

PyDoc_STRVAR(masked_lm_doc,
"masked_lm(tokens, len_a, num_to_predict, mask_id, word_ids) -> (positions, labels)\n\n"
"Google's create_masked_lm_predictions without whole-word masking, for tokens = [CLS] A [SEP] B\n"
"[SEP] with len(A) = len_a: the candidate positions 1..len_a and len_a + 2..len(tokens) - 2\n"
"shuffled (the draws of shuffle() on that list), the first num_to_predict of them chosen, then\n"
"mask(tokens, chosen, mask_id, word_ids).");

static PyObject *
Stream_masked_lm(Stream *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "masked_lm(tokens: list, len_a: int, num_to_predict: int, mask_id, word_ids: list)");
        return NULL;
    }
    Py_ssize_t num_tokens = PyList_GET_SIZE(args[0]);
    Py_ssize_t len_a = PyLong_AsSsize_t(args[1]), num_to_predict = PyLong_AsSsize_t(args[2]);
    if ((len_a == -1 || num_to_predict == -1) && PyErr_Occurred())
        return NULL;
    if (len_a < 0 || len_a + 3 > num_tokens || num_to_predict < 0 || num_tokens > (Py_ssize_t)0xffffffff) {
        PyErr_SetString(PyExc_ValueError, "masked_lm: needs 0 <= len_a <= len(tokens) - 3 and num_to_predict >= 0");
        return NULL;
    }
    Py_ssize_t m = num_tokens - 3; /* every token of A and B is a candidate */
    Py_ssize_t *candidates = PyMem_Malloc((m ? m : 1) * sizeof(Py_ssize_t));
    if (candidates == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t c = 0; c < m; c++)
        candidates[c] = c < len_a ? c + 1 : c + 2; /* skip [CLS], and the [SEP] after A */
    for (Py_ssize_t i = m - 1; i > 0; i--) { /* shuffle() */
        uint32_t j = below(self, (uint32_t)(i + 1));
        Py_ssize_t t = candidates[i];
        candidates[i] = candidates[j];
        candidates[j] = t;
    }
    PyObject *result = mask_chosen(self, args[0], candidates, num_to_predict < m ? num_to_predict : m,
                                   args[3], args[4]);
    PyMem_Free(candidates);
    return result;
}

PyDoc_STRVAR(varints_doc,
"varints(ids) -> bytes\n\n"
"The ints of the sequence ids, each in [0, 2**32), as concatenated protobuf varints: 7 bits a byte,\n"
"least significant first, the high bit set on every byte but a number's last.");

/* One id for varints(): an int, or anything with __index__ (a numpy integer, say). */
static int
id_value(PyObject *item, unsigned long *value)
{
    if (PyLong_CheckExact(item)) {
        *value = PyLong_AsUnsignedLong(item);
    }
    else {
        PyObject *number = PyNumber_Index(item);
        if (number == NULL)
            return -1;
        *value = PyLong_AsUnsignedLong(number);
        Py_DECREF(number);
    }
    if (*value == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (*value > 0xfffffffful) {
        PyErr_SetString(PyExc_OverflowError, "varints: ids must be below 2**32");
        return -1;
    }
    return 0;
}

static PyObject *
varints(PyObject *module, PyObject *ids)
{
    PyObject *seq = PySequence_Fast(ids, "varints: a sequence of ints is needed");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    /* At most 5 bytes a number: encode into a buffer of that size, then shrink it. */
    PyObject *out = n > PY_SSIZE_T_MAX / 5 ? PyErr_NoMemory() : PyBytes_FromStringAndSize(NULL, 5 * n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    unsigned char *start = (unsigned char *)PyBytes_AS_STRING(out), *p = start;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long v;
        if (id_value(items[i], &v) < 0) {
            Py_DECREF(seq);
            Py_DECREF(out);
            return NULL;
        }
        while (v >= 0x80) {
            *p++ = (unsigned char)(v | 0x80);
            v >>= 7;
        }
        *p++ = (unsigned char)v;
    }
    Py_DECREF(seq);
    if (_PyBytes_Resize(&out, p - start) < 0)
        return NULL;
    return out;
}

static PyMethodDef module_methods[] = {
    {"varints", (PyCFunction)varints, METH_O, varints_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef Stream_methods[] = {
    {"getstate", (PyCFunction)Stream_getstate, METH_NOARGS,
     "The state as random.Random().getstate()[1] (624 words and the index)."},
    {"random", (PyCFunction)Stream_random, METH_NOARGS, "random.Random.random()"},
    {"getrandbits", (PyCFunction)Stream_getrandbits, METH_O, "random.Random.getrandbits(k), k <= 32"},
    {"randbelow", (PyCFunction)Stream_randbelow, METH_O, "random.Random._randbelow(n), 1 <= n < 2**32"},
    {"shuffle", (PyCFunction)Stream_shuffle, METH_O, "random.Random.shuffle(x) for a list x"},
    {"words", (PyCFunction)Stream_words, METH_O,
     "getrandbits(32 * m).to_bytes(4 * m, 'little')"},
    {"mask", (PyCFunction)(void (*)(void))Stream_mask, METH_FASTCALL, mask_doc},
    {"masked_lm", (PyCFunction)(void (*)(void))Stream_masked_lm, METH_FASTCALL, masked_lm_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bertdetr.bert._speedups.Stream",
    .tp_basicsize = sizeof(Stream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stream(random.Random().getstate()[1]): that MT19937 stream, continued in C.",
    .tp_methods = Stream_methods,
    .tp_init = (initproc)Stream_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bertdetr.bert._speedups",
    .m_doc = "C for make-data's inner loops: the random stream (Stream) and varint encoding.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&StreamType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&StreamType);
    if (PyModule_AddObject(module, "Stream", (PyObject *)&StreamType) < 0) {
        Py_DECREF(&StreamType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
