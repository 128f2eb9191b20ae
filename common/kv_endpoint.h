/*  kv_endpoint.h: ZeroMQ endpoint strings the store accepts and publishes.
 *
 *  A process binds to an endpoint such as tcp://HOST:5601 with HOST "*" but must tell others
 *  one they can connect to; kv_endpoint_advertise turns the wildcard host
 *  into this machine's host name, which is what containers and pods resolve.
 */
#ifndef KV_ENDPOINT_H
#define KV_ENDPOINT_H

#include <stddef.h>

/* True for tcp://HOST:PORT (PORT 1..65535, HOST non-empty, no wildcard),
 * ipc://PATH and inproc://NAME, each within KV_ENDPOINT_MAX bytes. */
int kv_endpoint_is_valid(const char *endpoint);

/* Writes the endpoint to advertise for a bind endpoint into out (cap
 * bytes): a "*" or "0.0.0.0" host becomes the host name. Returns 0, or -1
 * when it does not fit. */
int kv_endpoint_advertise(const char *bind, char *out, size_t cap);

#endif
