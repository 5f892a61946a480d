/*
 * pyrec.h - the Cython module's direct access to model records (ipvs/_libipvs.pyx;
 * declared in ipvs/_libipvs.pxd). Not part of the C library: the one file of
 * csrc/ that uses the Python C API, included only by the Cython module (the
 * C layer below it knows nothing of Python).
 *
 * Records read from the kernel are built without validation: allocated like
 * object.__new__ does and their __slots__ filled directly, at the member
 * descriptors' offsets (why, and the guards that keep it honest, in
 * _libipvs.pyx). Header-only and inline: a record's fields are filled through
 * here for every service and destination of a listing.
 */
#ifndef IPVS_PYREC_H
#define IPVS_PYREC_H

#include <Python.h>
#include <structmember.h>   /* PyMemberDef (in descrobject.h since 3.12) */

/* A fresh, empty instance of the class cls (its slots all NULL). */
static inline PyObject *ipvs_rec_alloc(PyObject *cls)
{
    PyTypeObject *t = (PyTypeObject *)cls;
    return t->tp_alloc(t, 0);
}

/* The offset of a __slots__ member descriptor's slot; -1 if descr is not one. */
static inline Py_ssize_t ipvs_rec_offset(PyObject *descr)
{
    if (Py_TYPE(descr) != &PyMemberDescr_Type)
        return -1;
    return ((PyMemberDescrObject *)descr)->d_member->offset;
}

/* Set a slot of obj, fresh from ipvs_rec_alloc (the slot is still NULL). */
static inline void ipvs_rec_put(PyObject *obj, Py_ssize_t off, PyObject *v)
{
    Py_INCREF(v);
    *(PyObject **)((char *)obj + off) = v;
}

/* A slot's value, borrowed (NULL when the slot is unset). */
static inline PyObject *ipvs_rec_get(PyObject *obj, Py_ssize_t off)
{
    return *(PyObject **)((char *)obj + off);
}

#endif
