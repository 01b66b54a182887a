/*
 * conffile.h: stunnel 4/5 configuration files, read as stunnel's inetd mode
 * reads them, into the one struct config.
 */
#ifndef TLSFILTER_CONFFILE_H
#define TLSFILTER_CONFFILE_H

#include <stddef.h>

#include "options.h"

/*
 * Read an stunnel 4/5 configuration file into cfg (which already holds
 * defaults, or earlier command-line options: the file's values replace them).
 * Returns 0, or -1 with "FILE:LINE: message" (or "FILE: message" when no
 * line is at fault) in err.
 *
 * All or nothing: on -1, *cfg is exactly as it was before the call (no field
 * mapped, no note added) and whatever this call allocated is freed. On 0,
 * the strings and arrays put into *cfg, cfg->config_file included, are
 * never freed: they live for the process. Options accepted without effect
 * are recorded with options_note(). Never prints.
 */
int conffile_load(const char *path, struct config *cfg, char *err, size_t errlen);

#endif
