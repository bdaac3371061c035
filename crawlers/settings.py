"""Static Scrapy settings of the crawl process.

Per-crawl values (politeness, limits, user agent, output path) come from the crawl spec and are
applied on top of these by ``crawlers.run.build_settings``.
"""

BOT_NAME = "dataset_platform"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

# Politeness and safety defaults (run.py overrides them from the spec).
ROBOTSTXT_OBEY = True
USER_AGENT = "dataset-platform/0.1 (+https://github.com/dataset-platform)"
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_DELAY = 0.0
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 5_000_000
DOWNLOAD_WARNSIZE = 5_000_000
RETRY_TIMES = 2
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
# No remote-control HTTP server (it runs code sent to it) and no job files in the user's profile.
REMOTE_CONTROL_ENABLED = False

# Only HTTP(S): a page must not make the crawler read local files or talk FTP/S3.
DOWNLOAD_HANDLERS = {"file": None, "ftp": None, "s3": None, "data": None}

# Record every response, whatever its status (the spider only follows links from 2xx HTML).
HTTPERROR_ALLOW_ALL = True

# Breadth-first, so a max_pages cut keeps the pages closest to the start URLs.
DEPTH_PRIORITY = 1
SCHEDULER_DISK_QUEUE = "scrapy.squeues.PickleFifoDiskQueue"
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"

ITEM_PIPELINES = {"crawlers.pipelines.GzipJsonLinesPipeline": 300}

# Path of the gzip JSON Lines file the pipeline writes (set per crawl by run.py).
DATASET_PLATFORM_OUTPUT = ""

LOG_LEVEL = "INFO"
LOGSTATS_INTERVAL = 60.0
