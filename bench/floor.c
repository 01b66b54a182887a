/*
 * floor.c: the benchmark's floor, the least a per-connection TLS relay can
 * do: load one certificate and key, run the server handshake on fd 0/1,
 * connect to a fixed backend on the loopback, relay both ways with poll()
 * until both directions are closed, exit. No options, no logging, no
 * access control, no privilege handling: what tlsfilter costs beyond this
 * is the price of its features (and of anything it does wastefully).
 *
 *   floor PEMFILE PORT [TICKETKEYFILE]
 *
 * PEMFILE holds the key, the certificate and its chain (stunnel's layout).
 * TICKETKEYFILE (128 hex digits, as tlsfilter --generate-ticket-key
 * writes) turns session tickets on, so that floor processes resume each
 * other's sessions; without it no ticket is issued (as tlsfilter does).
 * Exit status 0 after a relay, 1 on any failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define PRIORITY                                                  \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"                  \
    ":-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305"   \
    ":-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"             \
    ":-GROUP-ALL:+GROUP-X25519:+GROUP-EC-ALL"                     \
    ":%SERVER_PRECEDENCE"

static unsigned char c2b[BUF_SIZE], b2c[BUF_SIZE];

static int backend_connect(const char *port)
{
    struct sockaddr_in sa;
    int fd, one = 1;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)strtol(port, NULL, 10));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static int load_key(const char *file, gnutls_datum_t *key)
{
    char hex[129];
    gnutls_datum_t h = {(unsigned char *)hex, 128};
    size_t size = 64;
    FILE *f = fopen(file, "r");

    if (f == NULL || fread(hex, 1, 128, f) != 128)
        return -1;
    fclose(f);
    key->data = gnutls_malloc(64);
    key->size = 64;
    return gnutls_hex_decode(&h, key->data, &size);
}

int main(int argc, char **argv)
{
    gnutls_certificate_credentials_t cred;
    gnutls_session_t s;
    gnutls_datum_t key;
    size_t c_start = 0, c_end = 0, b_start;
    int bfd, ret, client_open = 1, backend_open = 1, to_backend_done = 0;
    ssize_t r;

    if (argc < 3)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    if (gnutls_certificate_allocate_credentials(&cred) < 0)
        return 1;
    gnutls_certificate_set_flags(cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
    if (gnutls_certificate_set_x509_key_file2(cred, argv[1], argv[1], GNUTLS_X509_FMT_PEM, NULL,
                                              0) < 0)
        return 1;
    if (gnutls_init(&s, GNUTLS_SERVER | (argc > 3 ? 0 : GNUTLS_NO_TICKETS)) < 0)
        return 1;
    if (argc > 3 &&
        (load_key(argv[3], &key) < 0 || gnutls_session_ticket_enable_server(s, &key) < 0))
        return 1;
    /* tlsfilter's default priority (src/options.h), so that both choose
     * the same group (X25519) and cipher: the handshakes do the same work. */
    if (gnutls_priority_set_direct(s, PRIORITY, NULL) < 0)
        return 1;
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_transport_set_int2(s, 0, 1);
    gnutls_handshake_set_timeout(s, 30000);
    do
        ret = gnutls_handshake(s);
    while (ret < 0 && !gnutls_error_is_fatal(ret));
    if (ret < 0)
        return 1;
    bfd = backend_connect(argv[2]);
    if (bfd < 0)
        return 1;

    /* c2b: decrypted from the client, to the backend; b2c: the other way.
     * The loop ends once both directions are closed and c2b is written. */
    while (!to_backend_done || backend_open) {
        struct pollfd p[2] = {{0, 0, 0}, {bfd, 0, 0}};
        int pending = 0;

        if (client_open && c_end == c_start) {
            p[0].events = POLLIN;
            pending = gnutls_record_check_pending(s) > 0;
        }
        if (backend_open)
            p[1].events = POLLIN;
        if (c_end > c_start)
            p[1].events |= POLLOUT;
        if (!pending && poll(p, 2, -1) < 0 && errno != EINTR)
            return 1;
        if (pending || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            r = gnutls_record_recv(s, c2b, sizeof c2b);
            if (r > 0) {
                c_start = 0;
                c_end = (size_t)r;
            } else if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                client_open = 0; /* close_notify, FIN or an error */
            }
        }
        if (c_end > c_start && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            r = write(bfd, c2b + c_start, c_end - c_start);
            if (r > 0)
                c_start += (size_t)r;
            else if (r < 0 && errno != EAGAIN && errno != EINTR)
                c_start = c_end, client_open = 0;
        }
        if (!client_open && c_end == c_start && !to_backend_done) {
            shutdown(bfd, SHUT_WR);
            to_backend_done = 1;
        }
        if (backend_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            r = read(bfd, b2c, sizeof b2c);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                backend_open = 0;
                gnutls_bye(s, GNUTLS_SHUT_WR);
                shutdown(1, SHUT_WR); /* fd 0 and fd 1 are one socket */
            }
            /* fd 1 is blocking: each record goes out whole */
            for (b_start = 0; r > 0 && b_start < (size_t)r;) {
                ssize_t w = gnutls_record_send(s, b2c + b_start, (size_t)r - b_start);
                if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                    continue;
                if (w < 0) {
                    backend_open = 0;
                    break;
                }
                b_start += (size_t)w;
            }
        }
    }
    close(bfd);
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    return 0;
}
