/*  kv_endpoint.c: see kv_endpoint.h. */
#include "kv_endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_limits.h"

static int s_is_port(const char *text) {
    if (!*text || strlen(text) > 5) return 0;
    for (const char *c = text; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    long port = strtol(text, NULL, 10);
    return port >= 1 && port <= 65535;
}

static int s_is_tcp(const char *rest) {
    const char *colon = strrchr(rest, ':');
    if (!colon || colon == rest || !s_is_port(colon + 1)) return 0;
    if (colon - rest == 7 && strncmp(rest, "0.0.0.0", 7) == 0) return 0; /* a wildcard too */
    for (const char *c = rest; c < colon; c++)
        if (*c == '*' || *c == '/' || *c == ' ' || (unsigned char)*c < 0x20) return 0;
    return 1;
}

int kv_endpoint_is_valid(const char *endpoint) {
    if (!endpoint || strlen(endpoint) > KV_ENDPOINT_MAX) return 0;
    if (strncmp(endpoint, "tcp://", 6) == 0) return s_is_tcp(endpoint + 6);
    if (strncmp(endpoint, "ipc://", 6) == 0) return endpoint[6] != '\0';
    if (strncmp(endpoint, "inproc://", 9) == 0) return endpoint[9] != '\0';
    return 0;
}

int kv_endpoint_advertise(const char *bind, char *out, size_t cap) {
    const char *port = NULL;
    if (strncmp(bind, "tcp://*:", 8) == 0) port = bind + 8;
    if (strncmp(bind, "tcp://0.0.0.0:", 14) == 0) port = bind + 14;
    if (!port) {
        int len = snprintf(out, cap, "%s", bind);
        return len < 0 || (size_t)len >= cap ? -1 : 0;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0) strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    int len = snprintf(out, cap, "tcp://%s:%s", host, port);
    return len < 0 || (size_t)len >= cap ? -1 : 0;
}
