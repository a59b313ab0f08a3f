"""Request and response models of posts; one create model per post type, chosen by ``type``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

MAX_BODY = 20_000
MAX_TITLE = 200


class PostType(StrEnum):
    ARTICLE = "article"
    IMAGE_TEXT = "image_text"
    VIDEO = "video"
    AUDIO = "audio"
    POLL = "poll"
    QUIZ = "quiz"
    SURVEY = "survey"
    LIVESTREAM = "livestream"


class PostStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"
    HIDDEN = "hidden"
    REMOVED = "removed"


class Origin(StrEnum):
    ORIGINAL = "original"
    REPOST = "repost"


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Times must carry their offset; they are kept in UTC (SQLite would drop the offset).
Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Url = Annotated[AnyHttpUrl, Field(description="http(s) URL")]
Tag = Annotated[str, Field(min_length=1, max_length=32)]
ItemId = Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9_-]+$")]


class Source(Input):
    """Where the work comes from; a repost must name its source and link to it."""

    origin: Origin = Origin.ORIGINAL
    name: str | None = Field(None, max_length=200)
    url: Url | None = None
    licence: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _repost_needs_a_source(self) -> Source:
        if self.origin is Origin.REPOST and (not self.name or self.url is None):
            raise ValueError("a repost must give the source's name and url")
        return self


class Choice(Input):
    id: ItemId
    text: str = Field(min_length=1, max_length=200)


def _unique_ids(items: list[Any], what: str) -> None:
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} ids must be unique")


class PostBase(Input):
    community_id: str = Field(min_length=1, max_length=36)
    title: str | None = Field(None, min_length=1, max_length=MAX_TITLE)
    body: str | None = Field(None, min_length=1, max_length=MAX_BODY)
    tags: list[Tag] = Field(default_factory=list, max_length=10)
    source: Source = Field(default_factory=Source)
    publish_at: Instant | None = Field(
        None, description="In the future: the post is scheduled. Omitted: published now."
    )
    draft: bool = Field(False, description="Keep as a draft; publish later.")

    COMMON: ClassVar[frozenset[str]] = frozenset(
        {"type", "community_id", "title", "body", "tags", "source", "publish_at", "draft"}
    )

    def payload(self) -> dict[str, Any]:
        """The type-specific fields, stored as the post's ``payload``."""
        return self.model_dump(mode="json", exclude=set(self.COMMON))


class ArticleCreate(PostBase):
    type: Literal[PostType.ARTICLE]
    body: str = Field(min_length=1, max_length=MAX_BODY)
    cover_url: Url | None = None


class ImageTextCreate(PostBase):
    type: Literal[PostType.IMAGE_TEXT]
    body: str = Field(min_length=1, max_length=MAX_BODY)
    image_urls: list[Url] = Field(min_length=1, max_length=18)


class VideoCreate(PostBase):
    type: Literal[PostType.VIDEO]
    media_url: Url
    duration_s: int = Field(gt=0, le=24 * 3600)
    cover_url: Url | None = None


class AudioCreate(PostBase):
    type: Literal[PostType.AUDIO]
    media_url: Url
    duration_s: int = Field(gt=0, le=24 * 3600)


class PollCreate(PostBase):
    type: Literal[PostType.POLL]
    options: list[Choice] = Field(min_length=2, max_length=20)
    multiple: bool = False
    closes_at: Instant | None = None

    @model_validator(mode="after")
    def _check(self) -> PollCreate:
        _unique_ids(self.options, "option")
        return self


class QuizQuestion(Input):
    id: ItemId
    text: str = Field(min_length=1, max_length=500)
    options: list[Choice] = Field(min_length=2, max_length=10)
    correct_option_ids: list[ItemId] = Field(min_length=1, max_length=10)
    explanation: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _check(self) -> QuizQuestion:
        _unique_ids(self.options, "option")
        if not set(self.correct_option_ids) <= {o.id for o in self.options}:
            raise ValueError("correct_option_ids must name options of the question")
        return self


class QuizCreate(PostBase):
    type: Literal[PostType.QUIZ]
    questions: list[QuizQuestion] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _check(self) -> QuizCreate:
        _unique_ids(self.questions, "question")
        return self


class QuestionKind(StrEnum):
    CHOICE = "choice"
    RATING = "rating"
    TEXT = "text"


class SurveyQuestion(Input):
    id: ItemId
    kind: QuestionKind
    text: str = Field(min_length=1, max_length=500)
    options: list[Choice] = Field(default_factory=list, max_length=20)
    multiple: bool = False
    scale_max: int = Field(5, ge=2, le=10, description="Ratings run from 1 to scale_max.")
    required: bool = True

    @model_validator(mode="after")
    def _check(self) -> SurveyQuestion:
        if self.kind is QuestionKind.CHOICE and len(self.options) < 2:
            raise ValueError("a choice question needs at least two options")
        _unique_ids(self.options, "option")
        return self


class SurveyCreate(PostBase):
    type: Literal[PostType.SURVEY]
    questions: list[SurveyQuestion] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _check(self) -> SurveyCreate:
        _unique_ids(self.questions, "question")
        return self


class LivestreamCreate(PostBase):
    type: Literal[PostType.LIVESTREAM]
    starts_at: Instant
    stream_url: Url


PostCreate = Annotated[
    ArticleCreate
    | ImageTextCreate
    | VideoCreate
    | AudioCreate
    | PollCreate
    | QuizCreate
    | SurveyCreate
    | LivestreamCreate,
    Field(discriminator="type"),
]


class PostUpdate(Input):
    title: str | None = Field(None, min_length=1, max_length=MAX_TITLE)
    body: str | None = Field(None, min_length=1, max_length=MAX_BODY)
    tags: list[Tag] | None = Field(None, max_length=10)
    publish_at: Instant | None = Field(None, description="Reschedule a draft or scheduled post.")


class SourceRead(BaseModel):
    origin: Origin
    name: str | None
    url: str | None
    licence: str | None


class Counters(BaseModel):
    comments: int
    reactions: int
    likes: int
    shares: int
    views: int
    votes: int
    answers: int
    reports: int


class PostRead(BaseModel):
    id: str
    community_id: str
    author_id: str
    author_kind: str
    type: PostType
    status: PostStatus
    hidden_reason: str | None
    title: str | None
    body: str | None
    payload: dict[str, Any]
    tags: list[str]
    source: SourceRead
    publish_at: datetime | None
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    counters: Counters


class PostPage(BaseModel):
    items: list[PostRead]
    next_cursor: str | None


class CommentCreate(Input):
    body: str = Field(min_length=1, max_length=2000)
    parent_id: str | None = Field(None, max_length=36, description="Reply to a top-level comment.")


class CommentUpdate(Input):
    body: str = Field(min_length=1, max_length=2000)


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    post_id: str
    author_id: str
    parent_id: str | None
    body: str
    status: str
    edited_at: datetime | None
    created_at: datetime


class CommentPage(BaseModel):
    items: list[CommentRead]
    next_cursor: str | None


class ReactionKind(StrEnum):
    LIKE = "like"
    LOVE = "love"
    HAHA = "haha"
    WOW = "wow"
    SAD = "sad"
    CLAP = "clap"


class ReactionCreate(Input):
    kind: ReactionKind = ReactionKind.LIKE


class ReactionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    post_id: str
    member_id: str
    kind: ReactionKind
    created_at: datetime


class ShareChannel(StrEnum):
    WECHAT = "wechat"
    MOMENTS = "moments"
    WEIBO = "weibo"
    DOUYIN = "douyin"
    XIAOHONGSHU = "xiaohongshu"
    QQ = "qq"
    LINK = "link"
    OTHER = "other"


class ShareCreate(Input):
    channel: ShareChannel


class ShareRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    post_id: str
    member_id: str
    channel: ShareChannel
    created_at: datetime


class ViewCreate(Input):
    share_id: str | None = Field(None, max_length=36)


class ViewRead(BaseModel):
    post_id: str
    day: str = Field(description="The day in the community's time zone.")
    counted: bool = Field(description="False when this member already viewed the post that day.")


class VoteCreate(Input):
    option_ids: list[ItemId] = Field(min_length=1, max_length=20)


class OptionResult(BaseModel):
    id: str
    text: str
    votes: int


class PollResults(BaseModel):
    post_id: str
    voters: int
    closes_at: datetime | None
    options: list[OptionResult]
    my_option_ids: list[str] | None = None


class QuizAnswerCreate(Input):
    answers: dict[str, list[ItemId]] = Field(
        max_length=50, description="question id -> chosen option ids"
    )


class QuestionResult(BaseModel):
    question_id: str
    correct: bool
    chosen_option_ids: list[str]
    correct_option_ids: list[str]
    explanation: str | None


class QuizResult(BaseModel):
    post_id: str
    member_id: str
    score: int
    max_score: int
    all_correct: bool
    questions: list[QuestionResult]
    answered_at: datetime


class QuizResultPage(BaseModel):
    items: list[QuizResult]


SurveyValue = Annotated[str, Field(max_length=2000)] | int | list[ItemId]


class SurveyResponseCreate(Input):
    answers: dict[str, SurveyValue] = Field(max_length=50, description="question id -> answer")


class SurveyResponseRead(BaseModel):
    post_id: str
    member_id: str
    answers: dict[str, Any]
    answered_at: datetime
