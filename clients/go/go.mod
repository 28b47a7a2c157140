module edgechat

go 1.19
