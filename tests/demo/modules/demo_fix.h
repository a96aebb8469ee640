/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The demo's "vulnerability": /proc/cmdline is readable by every user, and
 * secrets passed on the kernel command line (demo.password=…, demo.token=…)
 * show up there. The fixes replace cmdline_proc_show() with a version that
 * prints the command line with those values masked.
 *
 * saved_command_line is not exported to modules, so each fix reads the text
 * /proc/cmdline shows when it loads (through the function it replaces, or
 * the previous fix) and masks it once; the replacement prints that copy.
 */
#ifndef LIVEPATCH_DEMO_FIX_H
#define LIVEPATCH_DEMO_FIX_H

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/seq_file.h>
#include <linux/string.h>

static char demo_cmdline[4096];

static void demo_mask(const char *key)
{
	size_t len = strlen(key);
	char *at = demo_cmdline;

	while ((at = strstr(at, key)) != NULL) {
		if (at == demo_cmdline || at[-1] == ' ') {
			at += len;
			while (*at && *at != ' ' && *at != '\n')
				*at++ = '*';
		} else {
			at += len;
		}
	}
}

static int demo_read_cmdline(void)
{
	struct file *file = filp_open("/proc/cmdline", O_RDONLY, 0);
	loff_t pos = 0;
	ssize_t count;

	if (IS_ERR(file))
		return PTR_ERR(file);
	count = kernel_read(file, demo_cmdline, sizeof(demo_cmdline) - 1, &pos);
	filp_close(file, NULL);
	if (count < 0)
		return count;
	demo_cmdline[count] = '\0';
	return 0;
}

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_puts(m, demo_cmdline);
	return 0;
}

#endif
