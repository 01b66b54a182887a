/*
 * privs.c: setgroups, setgid, setuid and non-dumpable, in that order, in one
 * audited place. Secrets are loaded before this runs and the network is
 * touched only after it.
 */
#include "config.h"

#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* A name, or a decimal id. */
static int lookup_id(const char *name, int is_group, unsigned long *id, unsigned long *gid)
{
    char *end;
    unsigned long v;

    if (is_group) {
        const struct group *gr = getgrnam(name);
        if (gr != NULL) {
            *id = gr->gr_gid;
            return 0;
        }
    } else {
        const struct passwd *pw = getpwnam(name);
        if (pw != NULL) {
            *id = pw->pw_uid;
            *gid = pw->pw_gid;
            return 0;
        }
    }
    errno = 0;
    v = strtoul(name, &end, 10);
    if (errno != 0 || *name == '\0' || *end != '\0' || v >= (unsigned long)(gid_t)-1)
        return -1;
    *id = v;
    if (!is_group) {
        /* A numeric user still gets its own primary group, when it has an entry. */
        const struct passwd *pw = getpwuid((uid_t)v);
        *gid = pw != NULL ? pw->pw_gid : v;
    }
    return 0;
}

/* The names and the directory privs_drop() will need, looked up. */
static int resolve(const struct config *cfg, unsigned long *uid, unsigned long *gid, char *err,
                   size_t errlen)
{
    unsigned long user_gid = 0, unused;

    *uid = *gid = 0;
    if (cfg->user != NULL && lookup_id(cfg->user, 0, uid, &user_gid) < 0) {
        snprintf(err, errlen, "unknown user '%s'", cfg->user);
        return -1;
    }
    if (cfg->group != NULL && lookup_id(cfg->group, 1, gid, &unused) < 0) {
        snprintf(err, errlen, "unknown group '%s'", cfg->group);
        return -1;
    }
    if (cfg->group == NULL)
        *gid = user_gid;
    return 0;
}

int privs_check(const struct config *cfg, char *err, size_t errlen)
{
    unsigned long uid, gid;
    struct stat st;

    if (resolve(cfg, &uid, &gid, err, errlen) < 0)
        return -1;
    if (cfg->chroot_dir != NULL && (stat(cfg->chroot_dir, &st) < 0 || !S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "chroot %s: not a directory", cfg->chroot_dir);
        return -1;
    }
    return 0;
}

int privs_drop(const struct config *cfg, char *err, size_t errlen)
{
    unsigned long uid, gid;
    bool change_ids = cfg->user != NULL || cfg->group != NULL;
    gid_t g;

    /* Names are looked up first: after the chroot, /etc is gone. */
    if (resolve(cfg, &uid, &gid, err, errlen) < 0)
        return -1;
    if (cfg->chroot_dir != NULL && (chroot(cfg->chroot_dir) < 0 || chdir("/") < 0)) {
        snprintf(err, errlen, "chroot %s: %s", cfg->chroot_dir, strerror(errno));
        return -1;
    }
    if (change_ids) {
        g = (gid_t)gid;
        if (geteuid() == 0 && setgroups(1, &g) < 0) {
            snprintf(err, errlen, "setgroups(%lu): %s", gid, strerror(errno));
            return -1;
        }
        if (setgid(g) < 0) {
            snprintf(err, errlen, "setgid(%lu): %s", gid, strerror(errno));
            return -1;
        }
        if (cfg->user != NULL && setuid((uid_t)uid) < 0) {
            snprintf(err, errlen, "setuid(%lu): %s", uid, strerror(errno));
            return -1;
        }
        /* A dropped process must not be able to regain root. */
        if (cfg->user != NULL && uid != 0 && setuid(0) == 0) {
            snprintf(err, errlen, "setuid(0) still works after dropping to %lu", uid);
            return -1;
        }
    }
    /* No core dumps and no ptrace by other processes of the same user: the
     * process holds the private key. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        snprintf(err, errlen, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
        return -1;
    }
    return 0;
}
