module gitops-restore.local/rawprobe

go 1.26
