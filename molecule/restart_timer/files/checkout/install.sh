#!/usr/bin/env bash
# Stands for upstream's installer: the restart program looks for it in the checkout.
exit 0
