// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch of a function this kernel does not have: klp_enable_patch()
 * fails (the symbol is not in kallsyms) and the module load is refused.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

static int livepatch_no_such_function(void)
{
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "livepatch_test_function_this_kernel_lacks",
		.new_func = livepatch_no_such_function,
	}, { }
};

static struct klp_object objs[] = {
	{
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.replace = true,
};

static int livepatch_missing_symbol_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_missing_symbol_exit(void)
{
}

module_init(livepatch_missing_symbol_init);
module_exit(livepatch_missing_symbol_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch test: patches a function the kernel lacks");
